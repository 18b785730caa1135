import Foundation

/// One line of metrics.jsonl.
public struct StepMetrics: Codable, Equatable, Sendable {
    public var step: Int
    public var epoch: Int
    public var loss: Float
    public var lr: Float
    public var gradNorm: Float
    public var tokensPerSecond: Double
    public var valLoss: Float?
    /// True on a step whose update was skipped for a non-finite loss or gradient norm.
    public var skipped: Bool?
    /// HellaSwag's accuracy by the sum, and by the mean, of the ending's losses (train --hellaswag).
    public var hellaswagAcc: Double?
    public var hellaswagAccNorm: Double?

    /// metrics.jsonl's keys.
    enum CodingKeys: String, CodingKey {
        case step, epoch, loss, lr, gradNorm = "grad_norm", tokensPerSecond = "tokens_per_s", valLoss = "val_loss",
            skipped, hellaswagAcc = "hellaswag_acc", hellaswagAccNorm = "hellaswag_acc_norm"
    }
}

/// A line `baton eval --hellaswag` appends to a run's metrics.jsonl: "eval" names the evaluation
/// (MetricsLog.read passes such lines over), "step" the checkpoint's step (so a resume from an
/// earlier checkpoint drops it with that step's lines).
public struct EvaluationRecord: Codable, Equatable, Sendable {
    public var eval: String
    public var step: Int
    public var checkpoint: String
    public var file: String
    public var examples: Int
    public var hellaswagAcc: Double
    public var hellaswagAccNorm: Double

    enum CodingKeys: String, CodingKey {
        case eval, step, checkpoint, file, examples, hellaswagAcc = "hellaswag_acc",
            hellaswagAccNorm = "hellaswag_acc_norm"
    }

    public init(
        eval: String, step: Int, checkpoint: String, file: String, examples: Int, hellaswagAcc: Double,
        hellaswagAccNorm: Double
    ) {
        self.eval = eval
        self.step = step
        self.checkpoint = checkpoint
        self.file = file
        self.examples = examples
        self.hellaswagAcc = hellaswagAcc
        self.hellaswagAccNorm = hellaswagAccNorm
    }
}

/// NaN and infinities are written as the strings "NaN", "Infinity", "-Infinity" (JSON has no
/// literal for them).
let nonFiniteAsStrings = (positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")

/// Appends one JSON object per step to `metrics.jsonl`.
public final class MetricsLog {
    public let url: URL
    private let handle: FileHandle
    private let encoder: JSONEncoder

    public init(url: URL) throws {
        self.url = url
        if !FileManager.default.fileExists(atPath: url.path) {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw BatonError("\(url.path): cannot create metrics file")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: url.path) else {
            throw BatonError("\(url.path): cannot open metrics file")
        }
        handle.seekToEndOfFile()
        self.handle = handle
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: nonFiniteAsStrings.positiveInfinity,
            negativeInfinity: nonFiniteAsStrings.negativeInfinity, nan: nonFiniteAsStrings.nan)
    }

    /// Appends a step's line, or another record (an `EvaluationRecord`).
    public func append<Record: Encodable>(_ metrics: Record) throws {
        var line = try encoder.encode(metrics)
        line.append(0x0A)
        do { try handle.write(contentsOf: line) } catch {
            throw BatonError("\(url.path): cannot append metrics (\(error.localizedDescription))")
        }
    }

    public static func read(_ url: URL) throws -> [StepMetrics] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw BatonError("\(url.path): cannot read metrics")
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: nonFiniteAsStrings.positiveInfinity,
            negativeInfinity: nonFiniteAsStrings.negativeInfinity, nan: nonFiniteAsStrings.nan)
        return try text.split(separator: "\n").compactMap { line in
            // A record `baton eval` appended is not a step's line.
            if (try? decoder.decode(EvaluationMarker.self, from: Data(line.utf8)))?.eval != nil { return nil }
            do { return try decoder.decode(StepMetrics.self, from: Data(line.utf8)) } catch {
                throw BatonError("\(url.path): malformed metrics line: \(line.prefix(80))")
            }
        }
    }

    /// The key that marks an evaluation's record.
    private struct EvaluationMarker: Decodable { var eval: String? }

    deinit { try? handle.close() }

    /// Keeps only the lines of a JSONL file whose "step" is at most `step` (and drops a torn last
    /// line), rewriting it atomically: after a resume every step appears once.
    public static func truncate(_ url: URL, afterStep step: Int) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else { return }
        var kept = Data()
        for line in data.split(separator: 0x0A, omittingEmptySubsequences: true) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                let lineStep = object["step"] as? Int
            else { continue }
            if lineStep <= step { kept.append(Data(line)); kept.append(0x0A) }
        }
        if kept != data { try AtomicFile.write(kept, to: url) }
    }
}
