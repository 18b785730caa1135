import Baton
import Foundation

let benchSpec = CommandSpec(
    name: "bench", summary: "Tokens/s of whole training steps (forward, backward, AdamW) on random tokens.",
    usage: "baton bench [options]",
    options: [
        Option(name: "--steps", placeholder: "N", help: "measured steps (default 10)"),
        Option(name: "--warmup-steps", placeholder: "N", help: "unmeasured steps first (default 2)"),
        Option(name: "--batch", placeholder: "B", help: "batch size (default 12)"),
        Option(name: "--checkpoint", placeholder: "DIR", help: "instead: time saving and loading a checkpoint of the model in DIR (deleted after)"),
    ] + modelOptions + deviceOptions)

func benchCommand(_ arguments: [String]) throws {
    guard let parsed = try benchSpec.parse(arguments) else { return }
    let defaults = TrainingConfig()
    var model = defaults.model
    try applyModelFlags(parsed, to: &model)
    try model.validate()
    let batch = try parsed.int("--batch") ?? defaults.batchSize
    let steps = try parsed.int("--steps") ?? 10
    let warmup = try parsed.int("--warmup-steps") ?? 2
    guard batch >= 1, steps >= 1, warmup >= 0 else { throw UsageError("baton bench: --batch and --steps must be at least 1, --warmup-steps at least 0") }
    let device = try openDevice(parsed)
    if let folder = parsed.string("--checkpoint") {
        let run = URL(fileURLWithPath: folder).appendingPathComponent("baton-checkpoint-bench-\(getpid())")
        defer { try? FileManager.default.removeItem(at: run) }
        let result = try CheckpointBenchmark.run(model: model, folder: run, device: device)
        let megabytes = Double(result.bytes) / 1e6
        print("checkpoint bench: \(result.parameters) parameters, \(String(format: "%.1f", megabytes)) MB (weights + AdamW moments), \(device.summary)")
        for (index, round) in result.rounds.enumerated() {
            print(String(format: "round %d: save %.3f s (%.1f MB/s), load %.3f s (%.1f MB/s)", index + 1, round.saveSeconds,
                         megabytes / round.saveSeconds, round.loadSeconds, megabytes / round.loadSeconds))
        }
        let bestSave = result.rounds.map(\.saveSeconds).min()!, bestLoad = result.rounds.map(\.loadSeconds).min()!
        print(String(format: "save_MB_per_s: %.1f", megabytes / bestSave))
        print(String(format: "load_MB_per_s: %.1f", megabytes / bestLoad))
        return
    }
    let result = try Benchmark.run(model: model, batchSize: batch, steps: steps, warmupSteps: warmup, device: device)
    print("bench: \(model.layers)L \(model.heads)H \(model.channels)C T=\(model.contextLength) B=\(batch) V=\(model.vocabularySize), \(result.parameters) parameters, \(device.summary)")
    print(String(format: "tokens_per_s: %.1f", result.tokensPerSecond))
    print(String(format: "ms_per_step: %.2f", result.secondsPerStep * 1000))
}
