import Baton
import Foundation

let evalSpec = CommandSpec(
    name: "eval",
    summary: "Mean next-token loss of weights over the first N sequences of a shard, or HellaSwag accuracy.",
    usage: "baton eval PATH (--data FILE [--sequences N] | --hellaswag FILE [--examples N])   (\(modelPathHelp))",
    options: options(
        """
        --data FILE: token shard to evaluate on
        --sequences N: number of consecutive sequences from the start of FILE (default 100)
        --hellaswag FILE: HellaSwag examples (JSONL: ctx, endings, label; e.g. hellaswag_val.jsonl) to score: prints
            acc (lowest summed loss of the ending) and acc_norm (lowest mean loss); for a run folder, also appends
            them to its metrics.jsonl
        --examples N: score only the first N examples of the --hellaswag file (default: all)
        --tokenizer bytes|gpt2|DIR: for --hellaswag; default: the one the run's data was prepared with, else the
            vocabulary's (256: bytes, 50257: GPT-2)
        """) + deviceOptions, takesArguments: true)

func evalCommand(_ arguments: [String]) throws {
    guard let parsed = try evalSpec.parse(arguments) else { return }
    let path = try modelPath(parsed)
    if let file = parsed.string("--hellaswag") {
        guard parsed.string("--data") == nil, parsed.string("--sequences") == nil else {
            throw UsageError("baton eval: --hellaswag and --data are two evaluations; give one")
        }
        return try evalHellaSwag(parsed, path: path, file: file)
    }
    for flag in ["--examples", "--tokenizer"] where parsed.string(flag) != nil {
        throw UsageError("baton eval: \(flag) goes with --hellaswag FILE")
    }
    guard let dataPath = parsed.string("--data") else {
        throw UsageError("baton eval: --data FILE or --hellaswag FILE is required")
    }
    let sequences = try parsed.int("--sequences") ?? 100
    guard sequences >= 1 else { throw UsageError("baton eval: --sequences must be at least 1, got \(sequences)") }
    try refuseFolder(dataPath)
    let device = try openDevice(parsed)
    let model = try ModelWeights.openModel(path: path, device: device)
    let shard = try openShard(dataPath, vocabularySize: model.config.vocabularySize, model: path)
    let loss = try Evaluation.meanLoss(model: model, shard: shard, sequences: sequences)
    print("sequences: \(sequences) of \(model.config.contextLength) tokens from \(dataPath)")
    print("loss: \(loss)")
}

/// eval reads one shard file; a folder (a data folder, as train takes) is named as one, with a
/// file in it to pass instead.
private func refuseFolder(_ path: String) throws {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else { return }
    let shards = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".bin") }
        .sorted()
    let suggestion =
        (shards.first { $0.contains("_val_") } ?? shards.first).map {
            ": pass e.g. --data \(URL(fileURLWithPath: path).appendingPathComponent($0).path)"
        }
        ?? ": pass one token shard file (baton prepare TEXT --out DIR writes them)"
    throw BatonError.invalidFlag(
        flag: "--data", message: "--data \(path) is a folder; eval reads one shard file\(suggestion)")
}

/// The shard, with every token below the model's vocabulary. eval has no flag that changes the
/// vocabulary (the weights fix it), so a token past it means the shard was made for another model.
private func openShard(_ path: String, vocabularySize: Int, model: String) throws -> TokenShard {
    let shard = try TokenShard(url: URL(fileURLWithPath: path), vocabularySize: Int(UInt32.max) + 1)
    let chunk = 1 << 20
    var start = 0
    while start < shard.tokenCount {
        let tokens = try shard.tokens(start: start, count: min(chunk, shard.tokenCount - start))
        if let index = tokens.firstIndex(where: { Int($0) >= vocabularySize }) {
            throw BatonError(
                "\(path): token \(tokens[index]) at position \(start + index) is not below the vocabulary "
                    + "\(vocabularySize) of the model \(model); evaluate on a shard prepared with the tokenizer that "
                    + "model was trained with"
            )
        }
        start += tokens.count
    }
    return shard
}
