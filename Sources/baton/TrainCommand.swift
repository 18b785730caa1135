import Baton
import Foundation

let trainSpec = CommandSpec(
    name: "train", summary: "Train a GPT-2 model. With no flags: the default small model on the bundled corpus.",
    usage: "baton train [options]",
    options: [
        Option(name: "--data", placeholder: "DIR", help: "folder of llm.c token shards (*train*.bin, *val*.bin); default data/paradise-lost"),
        Option(name: "--out", placeholder: "DIR", help: "run folder (default: a new folder under runs/)"),
        Option(name: "--steps", placeholder: "N", help: "optimizer steps (default 2000)"),
        Option(name: "--batch", placeholder: "B", help: "sequences per micro-batch (default 12)"),
        Option(name: "--grad-accum", placeholder: "N", help: "micro-batches per step (default 1)"),
    ] + modelOptions + [
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
    ] + deviceOptions)

func trainCommand(_ arguments: [String]) throws {
    guard let parsed = try trainSpec.parse(arguments) else { return }
    if let stray = parsed.positionals.first { throw UsageError("baton train: unexpected argument '\(stray)' (see baton train --help)") }
    var config = TrainingConfig()
    if let value = parsed.string("--data") { config.dataFolder = value }
    if let value = try parsed.int("--steps") { config.steps = value }
    if let value = try parsed.int("--batch") { config.batchSize = value }
    if let value = try parsed.int("--grad-accum") { config.gradientAccumulation = value }
    try applyModelFlags(parsed, to: &config.model)
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
    say(closing + ", \(Int(summary.tokensPerSecond)) tok/s")
}
