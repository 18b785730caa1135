import Foundation

/// `baton train --hellaswag FILE --hellaswag-every N`: HellaSwag scored every N steps (unset: at
/// each validation, --eval-every) and at the last step, into that step's metrics line. The file
/// is read and tokenized when the trainer is built, so a bad one stops the start, not the run.
/// Every rank scores its contiguous share of the examples (llm.c's split) and the counts are
/// summed over the ranks, so each rank reports the same figures. Scoring only runs the model
/// forward: the weights, the moments and the data order are untouched, so the training losses
/// are the same bits with it or without it.
public final class HellaSwagDuringTraining {
    public let file: URL
    public let every: Int
    /// This rank's share of the examples.
    let examples: [HellaSwag.TokenizedExample]
    let total: Int
    let shape: (rows: Int, T: Int)
    let communicator: Communicator?

    /// Nil when the config names no file.
    public init?(config: TrainingConfig, rank: Int, worldSize: Int, communicator: Communicator?) throws {
        guard let path = config.hellaswag else { return nil }
        file = URL(fileURLWithPath: path)
        every = config.hellaswagEvery ?? config.evalEvery
        let tokenizer = try TextTokenizer.forModel(
            vocabularySize: config.model.vocabularySize, tokenizerFolder: try ModelWeights.tokenizerFolder(of: config))
        let all = try HellaSwag.tokenize(
            try HellaSwag.read(file), tokenizer: tokenizer, contextLength: config.model.contextLength,
            vocabularySize: config.model.vocabularySize, file: file)
        total = all.count
        examples = Array(all[HellaSwag.share(count: all.count, rank: rank, size: worldSize)])
        // The training batch's shape, so the model keeps its activations: B / 4 examples a pass (the
        // rows past them padding; 4 rows when B < 4), each row the whole context.
        shape = (max(HellaSwag.endingsPerExample, config.batchSize), config.model.contextLength)
        self.communicator = worldSize > 1 ? communicator : nil
    }

    /// Whether the step just done is one to score at.
    public func isDue(step: Int, isLast: Bool) -> Bool { isLast || (every > 0 && step % every == 0) }

    /// Every rank's examples scored and counted together.
    public func evaluate(model: GPT) throws -> HellaSwag.Result {
        let local = HellaSwag.Result(
            try HellaSwag.score(model: model, examples: examples, rows: shape.rows, T: shape.T))
        guard let communicator else { return local }
        let counts = try communicator.allgather([Int64(local.examples), Int64(local.correct), Int64(local.correctNorm)])
        var summed = HellaSwag.Result()
        for rank in 0..<(counts.count / 3) {
            summed.examples += Int(counts[3 * rank])
            summed.correct += Int(counts[3 * rank + 1])
            summed.correctNorm += Int(counts[3 * rank + 2])
        }
        return summed
    }

    /// Scores the model and puts the figures in `record`; returns the progress line.
    public func evaluate(model: GPT, into record: inout StepMetrics) throws -> String {
        let result = try evaluate(model: model)
        record.hellaswagAcc = result.accuracy
        record.hellaswagAccNorm = result.normalizedAccuracy
        return HellaSwag.describe(result)
    }
}

extension HellaSwag {
    /// "hellaswag: acc 0.2500 (5/20) | acc_norm 0.3000 (6/20)".
    public static func describe(_ result: Result) -> String {
        "hellaswag: acc \(String(format: "%.4f", result.accuracy)) (\(result.correct)/\(result.examples)) | acc_norm "
            + "\(String(format: "%.4f", result.normalizedAccuracy)) (\(result.correctNorm)/\(result.examples))"
    }
}
