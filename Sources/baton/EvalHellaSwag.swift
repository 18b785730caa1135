import Baton
import Foundation

/// `baton eval PATH --hellaswag FILE [--examples N]`: HellaSwag's acc and acc_norm of the weights
/// PATH names (see HellaSwag). Given a run folder, it also appends one record (EvaluationRecord) to
/// the run's metrics.jsonl, holding the run's lock while it does so; given a checkpoint folder or
/// a weights file, it writes nothing.
func evalHellaSwag(_ parsed: ParsedArguments, path: String, file: String) throws {
    let limit = try parsed.int("--examples")
    if let limit, limit < 1 { throw UsageError("baton eval: --examples must be at least 1, got \(limit)") }
    let fileURL = URL(fileURLWithPath: file)
    let examples = Array(try HellaSwag.read(fileURL).prefix(limit ?? Int.max))
    let weights = try ModelWeights.resolve(path: path)
    var isFolder: ObjCBool = false
    let runFolder =
        FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) && isFolder.boolValue
            && !FileManager.default.fileExists(
                atPath: URL(fileURLWithPath: path).appendingPathComponent(CheckpointStore.stateFile).path)
        ? try RunFolder.locate(requested: path) : nil
    // Taken before the work, so a run that is training is named at once, not after the scoring.
    let lock = try runFolder.map { run in
        do { return try RunLock(runFolder: run.url) } catch {
            throw BatonError(
                "\(run.url.path) is in use by a baton process that holds \(run.url.path)/.lock; eval appends to "
                    + "its metrics.jsonl only when no process trains it: wait, or pass a checkpoint folder (nothing "
                    + "is written then)")
        }
    }
    let device = try openDevice(parsed)
    let model = try ModelWeights.openModel(path: weights.path, device: device)
    let folder = try ModelWeights.tokenizerFolder(ofWeights: weights)
    let tokenizer =
        try parsed.string("--tokenizer").map(TextTokenizer.named)
        ?? TextTokenizer.forModel(vocabularySize: model.config.vocabularySize, tokenizerFolder: folder)
    // Which one, since the picks depend on it: the flag's, the run's folder, or the vocabulary's.
    let source = parsed.string("--tokenizer").map { "\($0) (--tokenizer)" } ?? folder.map { "\($0.path) (the run's)" }
    switch tokenizer {
    case .bytes: print("tokenizer: bytes (each UTF-8 byte a token)")
    case .bpe: print("tokenizer: \(source ?? "GPT-2's, bundled (the vocabulary is 50257)")")
    }
    let tokenized = try HellaSwag.tokenize(
        examples, tokenizer: tokenizer, contextLength: model.config.contextLength,
        vocabularySize: model.config.vocabularySize, file: fileURL)
    let shape = HellaSwag.shape(for: tokenized, model: model)
    print(
        "hellaswag: \(tokenized.count) examples from \(file), \(shape.rows / HellaSwag.endingsPerExample) a pass of "
            + "\(shape.rows) x \(shape.T) tokens")
    let start = Date()
    let result = HellaSwag.Result(
        try HellaSwag.score(model: model, examples: tokenized, rows: shape.rows, T: shape.T))
    let seconds = Date().timeIntervalSince(start)
    print("acc: \(String(format: "%.4f", result.accuracy)) (\(result.correct)/\(result.examples))")
    print(
        "acc_norm: \(String(format: "%.4f", result.normalizedAccuracy)) (\(result.correctNorm)/\(result.examples))")
    let rate = Double(result.examples) / seconds
    print("time: \(String(format: "%.2f", seconds)) s scoring, \(String(format: "%.1f", rate)) examples/s")
    guard let runFolder else { return }
    let checkpoint = weights.deletingLastPathComponent()
    let state = try CheckpointState.decode(
        try Data(contentsOf: checkpoint.appendingPathComponent(CheckpointStore.stateFile)),
        path: checkpoint.appendingPathComponent(CheckpointStore.stateFile).path)
    try endWithNewline(runFolder.metricsURL)
    try MetricsLog(url: runFolder.metricsURL).append(
        EvaluationRecord(
            eval: "hellaswag", step: state.step, checkpoint: checkpoint.lastPathComponent, file: fileURL.path,
            examples: result.examples, hellaswagAcc: result.accuracy, hellaswagAccNorm: result.normalizedAccuracy))
    print("metrics: appended to \(runFolder.metricsURL.path) (step \(state.step))")
    withExtendedLifetime(lock) {}
}

/// A metrics file whose last line was cut short (a run killed while writing it) gets its newline
/// first, so the record appended is a line of its own.
private func endWithNewline(_ url: URL) throws {
    guard let handle = FileHandle(forUpdatingAtPath: url.path) else { return }
    defer { try? handle.close() }
    let end = try handle.seekToEnd()
    guard end > 0 else { return }
    try handle.seek(toOffset: end - 1)
    if try handle.read(upToCount: 1) != Data([0x0A]) {
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([0x0A]))
    }
}
