import Baton
import Foundation

let benchSpec = CommandSpec(
    name: "bench", summary: "Tokens/s of whole training steps (forward, backward, AdamW) on random tokens.",
    usage: "baton bench [options]",
    options: options(
        """
        --steps N: measured steps (default 10)
        --warmup-steps N: unmeasured steps first (default 2)
        --batch B: batch size (default 12)
        --precision fp32|tf32|bf16: the matmuls' precision (default: bf16 on a GPU of sm_80 or newer, else fp32)
        --profile: then the same steps again with each op timed (waiting for the device after each): a table of ms per
            step by op
        --checkpoint DIR: instead: time saving and loading a checkpoint of the model in DIR (deleted after)
        --allreduce: instead, under mpirun: GB/s of summing 1M, 10M and 100M floats over the ranks, exact and fast
        --tokenize FILE: instead: tokenizer speed on a UTF-8 text file, on --threads threads
        --tokenizer gpt2|DIR: with --tokenize: the bundled GPT-2 tokenizer (default) or a folder (tokenizer.json, or
            vocab.json and merges.txt)
        """) + settingOptions(recomputeSettings) + modelOptions + deviceOptions)

/// --recompute, as train declares it.
let recomputeSettings = TrainingConfig.settings.filter { $0.key == "recompute" }

func benchCommand(_ arguments: [String]) throws {
    guard let parsed = try benchSpec.parse(arguments) else { return }
    let defaults = TrainingConfig()
    var model = defaults.model
    try applyModelFlags(parsed, to: &model)
    try model.validate()
    let batch = try parsed.int("--batch") ?? defaults.batchSize
    let steps = try parsed.int("--steps") ?? 10
    let warmup = try parsed.int("--warmup-steps") ?? 2
    guard batch >= 1, steps >= 1, warmup >= 0 else {
        throw UsageError("baton bench: --batch and --steps must be at least 1, --warmup-steps at least 0")
    }
    if parsed.flag("--allreduce") {
        try allreduceBench(rounds: max(steps / 2, 3))
        return
    }
    if let file = parsed.string("--tokenize") {
        try tokenizerBench(
            file: file, tokenizer: parsed.string("--tokenizer") ?? "gpt2", threads: try threadCount(parsed) ?? 1,
            rounds: max(steps / 5, 1))
        return
    }
    let device = try openDevice(parsed)
    if let folder = parsed.string("--checkpoint") {
        let run = URL(fileURLWithPath: folder).appendingPathComponent("baton-checkpoint-bench-\(getpid())")
        defer { try? FileManager.default.removeItem(at: run) }
        let result = try CheckpointBenchmark.run(model: model, folder: run, device: device)
        let megabytes = Double(result.bytes) / 1e6
        print(
            "checkpoint bench: \(result.parameters) parameters, \(String(format: "%.1f", megabytes)) MB (weights + "
                + "AdamW moments), \(device.summary)"
        )
        for (index, round) in result.rounds.enumerated() {
            print(
                String(
                    format: "round %d: save %.3f s (%.1f MB/s), load %.3f s (%.1f MB/s)", index + 1, round.saveSeconds,
                    megabytes / round.saveSeconds, round.loadSeconds, megabytes / round.loadSeconds))
        }
        let bestSave = result.rounds.map(\.saveSeconds).min()!, bestLoad = result.rounds.map(\.loadSeconds).min()!
        print(String(format: "save_MB_per_s: %.1f", megabytes / bestSave))
        print(String(format: "load_MB_per_s: %.1f", megabytes / bestLoad))
        return
    }
    let name = parsed.string("--precision") ?? Precision.defaultFor(device).rawValue
    guard let precision = Precision(rawValue: name) else {
        throw UsageError("baton bench: --precision expects fp32, tf32 or bf16, got '\(name)'")
    }
    try device.setPrecision(precision)
    let recompute = try TrainingConfig().applying(settingFlags(parsed, recomputeSettings)).recompute ?? .off
    let result = try Benchmark.run(
        model: model, batchSize: batch, steps: steps, warmupSteps: warmup, device: device,
        profile: parsed.flag("--profile"), recompute: recompute)
    print(
        "bench: \(model.layers)L \(model.heads)H \(model.channels)C T=\(model.contextLength) B=\(batch) "
            + "V=\(model.vocabularySize), \(result.parameters) parameters, \(precision.rawValue), \(device.summary)"
    )
    print(result.activationSummary)
    print("activation_bytes: \(result.activationBytes)")
    print(String(format: "tokens_per_s: %.1f", result.tokensPerSecond))
    print(String(format: "ms_per_step: %.2f", result.secondsPerStep * 1000))
    if let profile = result.profile {
        print("profile: \(steps) more steps, each op waited for (so the ops add up to more than ms_per_step)")
        for line in profile.report(steps: steps) { print(line) }
    }
}

/// Tokens/s of the GPT-2 tokenizer on a text file: the median of `rounds` timed encodes (each
/// from a fresh cache), after loading.
func tokenizerBench(file: String, tokenizer name: String, threads: Int, rounds: Int) throws {
    guard let data = FileManager.default.contents(atPath: file) else { throw BatonError("\(file): cannot read") }
    guard let text = String(data: data, encoding: .utf8) else { throw BatonError("\(file): not valid UTF-8") }
    let folder = name == "gpt2" ? try GPT2Tokenizer.bundledFolder() : URL(fileURLWithPath: name)
    var seconds: [Double] = []
    var count = 0
    for _ in 0..<rounds {
        let tokenizer = try BPETokenizer(folder: folder)
        let start = monotonicSeconds()
        count = threads > 1 ? tokenizer.encode(text, threads: threads).count : tokenizer.encode(text).count
        seconds.append(monotonicSeconds() - start)
    }
    let median = seconds.sorted()[seconds.count / 2]
    print(
        "tokenize: \(data.count) bytes -> \(count) tokens, \(threads) thread\(threads == 1 ? "" : "s"), median of "
            + "\(rounds)"
    )
    print(String(format: "tokens_per_s: %.0f", Double(count) / median))
    print(String(format: "MB_per_s: %.2f", Double(data.count) / median / 1e6))
}

/// GB/s of summing a tensor over the ranks of an mpirun job, exact (recursive doubling) and fast
/// (MPI_Allreduce): the median of `rounds`, bytes of one rank's tensor over the time. Rank 0 prints.
func allreduceBench(rounds: Int) throws {
    guard let communicator = try Communicator.join() else {
        throw UsageError(
            "baton bench --allreduce: start it with mpirun -np N (it measures communication between ranks)")
    }
    let device = Device.cpu(threads: 1)
    if communicator.rank == 0 { print("allreduce: \(communicator.size) ranks, float32, median of \(rounds)") }
    for count in [1_000_000, 10_000_000, 100_000_000] {
        let tensor = try device.allocate(floats: count)
        var line = "floats \(count):"
        for exact in [true, false] {
            let parallel = DataParallel(communicator: communicator, exact: exact)
            var times: [Double] = []
            for _ in 0..<rounds {
                try communicator.barrier()
                let start = monotonicSeconds()
                try parallel.sum(tensor, on: device)
                times.append(monotonicSeconds() - start)
            }
            let median = times.sorted()[times.count / 2]
            line += String(
                format: " %@ %.3f s (%.2f GB/s)", exact ? (parallel.usesTree ? "exact" : "exact(=fast)") : "fast",
                median, Double(count * 4) / median / 1e9)
        }
        if communicator.rank == 0 { print(line) }
    }
    communicator.finalize()
}
