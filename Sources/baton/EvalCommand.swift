import Baton
import Foundation

let evalSpec = CommandSpec(
    name: "eval", summary: "Mean next-token loss of weights over the first N sequences of a shard.",
    usage: "baton eval PATH --data FILE [--sequences N]   (\(modelPathHelp))",
    options: options("""
        --data FILE: token shard to evaluate on (required)
        --sequences N: number of consecutive sequences from the start of FILE (default 100)
        """) + deviceOptions, takesArguments: true)

func evalCommand(_ arguments: [String]) throws {
    guard let parsed = try evalSpec.parse(arguments) else { return }
    let path = try modelPath(parsed)
    guard let dataPath = parsed.string("--data") else { throw UsageError("baton eval: --data FILE is required") }
    let sequences = try parsed.int("--sequences") ?? 100
    let device = try openDevice(parsed)
    let model = try ModelWeights.openModel(path: path, device: device)
    let shard = try TokenShard(url: URL(fileURLWithPath: dataPath), vocabularySize: model.config.vocabularySize)
    let loss = try Evaluation.meanLoss(model: model, shard: shard, sequences: sequences)
    print("sequences: \(sequences) of \(model.config.contextLength) tokens from \(dataPath)")
    print("loss: \(loss)")
}

