import Baton
import Foundation

let deviceOptions = [
    Option(name: "--device", placeholder: "cpu|cuda|auto", help: "backend to run on (default auto: CUDA where it loads, else CPU)"),
    Option(name: "--threads", placeholder: "N", help: "CPU threads (default: one per core)"),
]
let helpOption = Option(name: "--help", placeholder: nil, help: "show this help")

/// Opens the requested device. With `announce`, prints a "device:" line on stdout (with the reason
/// when auto chose); sample passes false so its stdout is only the generated text.
func openDevice(_ arguments: ParsedArguments, announce: Bool = true) throws -> any Device {
    let fallback = "auto"
    let name = arguments.string("--device") ?? fallback
    guard let request = DeviceRequest(rawValue: name) else {
        throw UsageError("baton \(arguments.command): --device expects cpu, cuda or auto, got '\(name)'")
    }
    let threads = try arguments.int("--threads") ?? 0
    guard threads >= 0 else { throw UsageError("baton \(arguments.command): --threads must not be negative") }
    var reason: String?
    let device = try DeviceSelection.open(request, threads: threads, log: { reason = $0 })
    if announce { say("device: \(device.summary)" + (reason.map { " (\($0))" } ?? "")) }
    return device
}

func say(_ line: String) {
    print(line)
    fflush(nil)
}

// MARK: - train

let trainOptions = [
    Option(name: "--data", placeholder: "DIR", help: "folder of llm.c token shards (*train*.bin, *val*.bin); default data/paradise-lost"),
    Option(name: "--out", placeholder: "DIR", help: "run folder (default: a new folder under runs/)"),
    Option(name: "--steps", placeholder: "N", help: "optimizer steps (default 2000)"),
    Option(name: "--batch", placeholder: "B", help: "sequences per micro-batch (default 12)"),
    Option(name: "--grad-accum", placeholder: "N", help: "micro-batches per step (default 1)"),
    Option(name: "--seq-len", placeholder: "T", help: "context length (default 64)"),
    Option(name: "--layers", placeholder: "N", help: "transformer blocks (default 4)"),
    Option(name: "--heads", placeholder: "N", help: "attention heads (default 4)"),
    Option(name: "--embd", placeholder: "C", help: "channels (default 128)"),
    Option(name: "--vocab-size", placeholder: "V", help: "vocabulary size; token ids must be below it (default 256, bytes)"),
    Option(name: "--lr", placeholder: "X", help: "peak learning rate (default 1e-3)"),
    Option(name: "--min-lr", placeholder: "X", help: "learning rate at the end of the cosine decay (default 1e-4)"),
    Option(name: "--warmup", placeholder: "N", help: "linear warmup steps (default 100)"),
    Option(name: "--weight-decay", placeholder: "X", help: "AdamW weight decay on 2-D weights (default 0.1)"),
    Option(name: "--beta1", placeholder: "X", help: "AdamW beta1 (default 0.9)"),
    Option(name: "--beta2", placeholder: "X", help: "AdamW beta2 (default 0.99)"),
    Option(name: "--grad-clip", placeholder: "X", help: "clip the global gradient norm to this; 0 turns clipping off (default 1.0)"),
    Option(name: "--seed", placeholder: "N", help: "seed for the initial weights and the data order (default 1337)"),
    Option(name: "--eval-every", placeholder: "N", help: "validation loss every N steps; 0: only at the end (default 250)"),
    Option(name: "--eval-batches", placeholder: "N", help: "validation batches per evaluation (default 20)"),
    Option(name: "--log-every", placeholder: "N", help: "print a progress line every N steps (default 10)"),
] + deviceOptions + [helpOption]

func trainCommand(_ arguments: [String]) throws {
    let parsed = try ParsedArguments(command: "train", arguments: arguments, options: trainOptions)
    if parsed.flag("--help") {
        print(helpText(command: "train", summary: "Train a GPT-2 model. With no flags: the default small model on the bundled corpus.",
                       usage: "baton train [options]", options: trainOptions))
        return
    }
    if let stray = parsed.positionals.first { throw UsageError("baton train: unexpected argument '\(stray)' (see baton train --help)") }
    var config = TrainingConfig()
    if let value = parsed.string("--data") { config.dataFolder = value }
    if let value = try parsed.int("--steps") { config.steps = value }
    if let value = try parsed.int("--batch") { config.batchSize = value }
    if let value = try parsed.int("--grad-accum") { config.gradientAccumulation = value }
    if let value = try parsed.int("--seq-len") { config.model.contextLength = value }
    if let value = try parsed.int("--layers") { config.model.layers = value }
    if let value = try parsed.int("--heads") { config.model.heads = value }
    if let value = try parsed.int("--embd") { config.model.channels = value }
    if let value = try parsed.int("--vocab-size") { config.model.vocabularySize = value }
    if let value = try parsed.float("--lr") { config.learningRate = value }
    if let value = try parsed.float("--min-lr") { config.minLearningRate = value }
    if let value = try parsed.int("--warmup") { config.warmupSteps = value }
    if let value = try parsed.float("--weight-decay") { config.weightDecay = value }
    if let value = try parsed.float("--beta1") { config.beta1 = value }
    if let value = try parsed.float("--beta2") { config.beta2 = value }
    if let value = try parsed.float("--grad-clip") { config.gradientClip = value }
    if let value = try parsed.seed("--seed") { config.seed = value }
    if let value = try parsed.int("--eval-every") { config.evalEvery = value }
    if let value = try parsed.int("--eval-batches") { config.evalBatches = value }
    if let value = try parsed.int("--log-every") { config.logEvery = value }
    config.device = parsed.string("--device") ?? "auto"
    config.threads = try parsed.int("--threads") ?? 0
    try config.validate()
    if parsed.string("--data") == nil, !FileManager.default.fileExists(atPath: config.dataFolder) {
        throw BatonError("--data: the default data set \(config.dataFolder) is not here; run from the repository root or pass --data DIR")
    }
    let device = try openDevice(parsed)
    let runFolder = try RunFolder.create(requested: parsed.string("--out"))
    let trainer = try Trainer(config: config, device: device, runFolder: runFolder, log: { say($0) })
    let summary = try trainer.run()
    var closing = "done: \(summary.steps) steps, final loss \(String(format: "%.4f", summary.finalLoss))"
    if let val = summary.finalValidationLoss { closing += ", val loss \(String(format: "%.4f", val))" }
    closing += ", \(Int(summary.tokensPerSecond)) tok/s"
    say(closing)
}

// MARK: - sample

let sampleOptions = [
    Option(name: "--prompt", placeholder: "TEXT", help: "text to continue (default: a newline)"),
    Option(name: "--length", placeholder: "N", help: "tokens to generate (default 300)"),
    Option(name: "--temperature", placeholder: "X", help: "softmax temperature; 0 is greedy (default 0.8)"),
    Option(name: "--top-k", placeholder: "K", help: "sample among the K likeliest tokens; 0: all (default 40)"),
    Option(name: "--seed", placeholder: "N", help: "sampling seed (default 42)"),
] + deviceOptions + [helpOption]

func sampleCommand(_ arguments: [String]) throws {
    let parsed = try ParsedArguments(command: "sample", arguments: arguments, options: sampleOptions)
    if parsed.flag("--help") {
        print(helpText(command: "sample", summary: "Generate text from trained weights.",
                       usage: "baton sample PATH [options]   (PATH: a run folder or its model.safetensors)", options: sampleOptions))
        return
    }
    guard parsed.positionals.count == 1 else { throw UsageError("baton sample: give one PATH, a run folder or weights file (see baton sample --help)") }
    let length = try parsed.int("--length") ?? 300
    let temperature = try parsed.float("--temperature") ?? 0.8
    let topK = try parsed.int("--top-k") ?? 40
    guard length >= 0 else { throw UsageError("baton sample: --length must not be negative") }
    guard temperature >= 0 else { throw UsageError("baton sample: --temperature must not be negative") }
    guard topK >= 0 else { throw UsageError("baton sample: --top-k must not be negative") }
    let device = try openDevice(parsed, announce: false)
    let model = try ModelWeights.openModel(path: parsed.positionals[0], device: device)
    guard model.config.vocabularySize == ByteTokenizer.vocabularySize else {
        throw BatonError("\(parsed.positionals[0]): vocabulary \(model.config.vocabularySize) is not the byte tokenizer's 256; baton sample only decodes byte-level models")
    }
    let prompt = parsed.string("--prompt") ?? ""
    FileHandle.standardOutput.write(Data(prompt.utf8))
    var pending: [UInt8] = []
    _ = try Sampler.generate(model: model, prompt: ByteTokenizer.encode(prompt), length: length, temperature: temperature,
                             topK: topK, seed: try parsed.seed("--seed") ?? 42) { token in
        // Print whole UTF-8 characters as they complete.
        pending.append(UInt8(clamping: token))
        if String(validating: pending, as: UTF8.self) != nil || pending.count >= 4 {
            FileHandle.standardOutput.write(Data(pending))
            pending.removeAll()
        }
    }
    FileHandle.standardOutput.write(Data(pending + [0x0A]))
}

// MARK: - eval

let evalOptions = [
    Option(name: "--data", placeholder: "FILE", help: "token shard to evaluate on (required)"),
    Option(name: "--sequences", placeholder: "N", help: "number of consecutive sequences from the start of FILE (default 100)"),
] + deviceOptions + [helpOption]

func evalCommand(_ arguments: [String]) throws {
    let parsed = try ParsedArguments(command: "eval", arguments: arguments, options: evalOptions)
    if parsed.flag("--help") {
        print(helpText(command: "eval", summary: "Mean next-token loss of weights over the first N sequences of a shard.",
                       usage: "baton eval PATH --data FILE [--sequences N]   (PATH: a run folder or its model.safetensors)", options: evalOptions))
        return
    }
    guard parsed.positionals.count == 1 else { throw UsageError("baton eval: give one PATH, a run folder or weights file (see baton eval --help)") }
    guard let dataPath = parsed.string("--data") else { throw UsageError("baton eval: --data FILE is required") }
    let sequences = try parsed.int("--sequences") ?? 100
    let device = try openDevice(parsed)
    let model = try ModelWeights.openModel(path: parsed.positionals[0], device: device)
    let shard = try TokenShard(url: URL(fileURLWithPath: dataPath), vocabularySize: model.config.vocabularySize)
    let loss = try Evaluation.meanLoss(model: model, shard: shard, sequences: sequences)
    print("sequences: \(sequences) of \(model.config.contextLength) tokens from \(dataPath)")
    print("loss: \(loss)")
}

// MARK: - prepare

let prepareOptions = [
    Option(name: "--out", placeholder: "DIR", help: "folder for the shards (required)"),
    Option(name: "--name", placeholder: "NAME", help: "shard name prefix (default corpus)"),
    helpOption,
]

func prepareCommand(_ arguments: [String]) throws {
    let parsed = try ParsedArguments(command: "prepare", arguments: arguments, options: prepareOptions)
    if parsed.flag("--help") {
        print(helpText(command: "prepare", summary: "Tokenize text files byte by byte into llm.c shards: 90% train, 10% val.",
                       usage: "baton prepare TEXT... --out DIR", options: prepareOptions))
        return
    }
    guard !parsed.positionals.isEmpty else { throw UsageError("baton prepare: give at least one text file (see baton prepare --help)") }
    guard let out = parsed.string("--out") else { throw UsageError("baton prepare: --out DIR is required") }
    let result = try DatasetPreparation.prepare(textFiles: parsed.positionals.map { URL(fileURLWithPath: $0) },
                                                outputFolder: URL(fileURLWithPath: out), name: parsed.string("--name") ?? "corpus")
    print("wrote \(result.files.map(\.path).joined(separator: ", ")): \(result.trainTokens) train and \(result.valTokens) val tokens")
}

// MARK: - bench

let benchOptions = [
    Option(name: "--steps", placeholder: "N", help: "measured steps (default 10)"),
    Option(name: "--warmup-steps", placeholder: "N", help: "unmeasured steps first (default 2)"),
    Option(name: "--batch", placeholder: "B", help: "batch size (default 12)"),
    Option(name: "--seq-len", placeholder: "T", help: "context length (default 64)"),
    Option(name: "--layers", placeholder: "N", help: "transformer blocks (default 4)"),
    Option(name: "--heads", placeholder: "N", help: "attention heads (default 4)"),
    Option(name: "--embd", placeholder: "C", help: "channels (default 128)"),
    Option(name: "--vocab-size", placeholder: "V", help: "vocabulary size (default 256)"),
] + deviceOptions + [helpOption]

func benchCommand(_ arguments: [String]) throws {
    let parsed = try ParsedArguments(command: "bench", arguments: arguments, options: benchOptions)
    if parsed.flag("--help") {
        print(helpText(command: "bench", summary: "Tokens/s of whole training steps (forward, backward, AdamW) on random tokens.",
                       usage: "baton bench [options]", options: benchOptions))
        return
    }
    let defaults = TrainingConfig()
    var model = defaults.model
    if let value = try parsed.int("--seq-len") { model.contextLength = value }
    if let value = try parsed.int("--layers") { model.layers = value }
    if let value = try parsed.int("--heads") { model.heads = value }
    if let value = try parsed.int("--embd") { model.channels = value }
    if let value = try parsed.int("--vocab-size") { model.vocabularySize = value }
    try model.validate()
    let batch = try parsed.int("--batch") ?? defaults.batchSize
    let steps = try parsed.int("--steps") ?? 10
    let warmup = try parsed.int("--warmup-steps") ?? 2
    guard batch >= 1, steps >= 1, warmup >= 0 else { throw UsageError("baton bench: --batch and --steps must be at least 1, --warmup-steps at least 0") }
    let device = try openDevice(parsed)
    let result = try Benchmark.run(model: model, batchSize: batch, steps: steps, warmupSteps: warmup, device: device)
    print("bench: \(model.layers)L \(model.heads)H \(model.channels)C T=\(model.contextLength) B=\(batch) V=\(model.vocabularySize), \(result.parameters) parameters, \(device.summary)")
    print(String(format: "tokens_per_s: %.1f", result.tokensPerSecond))
    print(String(format: "ms_per_step: %.2f", result.secondsPerStep * 1000))
}
