import Foundation

/// HellaSwag (Zellers et al. 2019) scored as llm.c and build-nanogpt score it: each of an example's
/// four endings follows the context (tokens of `ctx`, then of " " + ending), the model's loss is
/// taken at every position that predicts an ending token, and the example's picks are the ending
/// with the lowest sum of those losses (`acc`) and the one with the lowest mean (`acc_norm`, the
/// figure llm.c reports). Reads the official file's format: one JSON object per line with `ctx`,
/// `endings` (4 strings) and `label` (0-3); its other keys are ignored.
public enum HellaSwag {
    public static let endingsPerExample = 4

    /// One line of the file.
    public struct Example: Equatable, Sendable {
        /// 1-based line number in the file.
        public var line: Int
        public var context: String
        public var endings: [String]
        public var label: Int
    }

    /// An example as token ids.
    public struct TokenizedExample: Equatable, Sendable {
        public var line: Int
        public var label: Int
        public var context: [Int32]
        public var endings: [[Int32]]
        /// The tokens of the longest of the four rows (context then ending).
        public var longestRow: Int { context.count + (endings.map(\.count).max() ?? 0) }
    }

    /// One example's losses and picks.
    public struct Score: Equatable, Sendable {
        public var label: Int
        /// Per ending: the sum, and the mean, of the losses at the positions predicting its tokens.
        public var sums: [Double]
        public var means: [Double]
        /// The lowest sum's ending, and the lowest mean's (the first of equal ones).
        public var pick: Int { lowest(sums) }
        public var pickNorm: Int { lowest(means) }
    }

    /// Counts over a set of examples.
    public struct Result: Equatable, Sendable {
        public var examples: Int
        public var correct: Int
        public var correctNorm: Int
        public var accuracy: Double { examples == 0 ? 0 : Double(correct) / Double(examples) }
        public var normalizedAccuracy: Double { examples == 0 ? 0 : Double(correctNorm) / Double(examples) }

        public init(examples: Int = 0, correct: Int = 0, correctNorm: Int = 0) {
            self.examples = examples
            self.correct = correct
            self.correctNorm = correctNorm
        }

        public init(_ scores: [Score]) {
            self.init(
                examples: scores.count, correct: scores.filter { $0.pick == $0.label }.count,
                correctNorm: scores.filter { $0.pickNorm == $0.label }.count)
        }
    }

    // MARK: reading

    /// The keys of a line that Baton reads.
    private struct Line: Decodable {
        var ctx: String
        var endings: [String]
        var label: Label

        /// An int (the official file), or a string holding one (Hugging Face `datasets` exports).
        struct Label: Decodable {
            var value: Int
            init(from decoder: Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let number = try? container.decode(Int.self) {
                    value = number
                } else if let text = try? container.decode(String.self), let number = Int(text) {
                    value = number
                } else {
                    throw DecodingError.typeMismatch(
                        Int.self, .init(codingPath: decoder.codingPath, debugDescription: "not a whole number"))
                }
            }
        }
    }

    /// Every example of a HellaSwag JSONL file, blank lines skipped. A line that is not a JSON
    /// object with a string `ctx`, four string `endings` and a `label` from 0 to 3 is refused,
    /// naming the file and the line (`flag`: the flag that named the file, for the error).
    public static func read(_ url: URL, flag: String = "--hellaswag") throws -> [Example] {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw BatonError.invalidFlag(flag: flag, message: "\(flag) \(url.path): cannot read the file")
        }
        func refuse(_ line: Int, _ what: String) -> BatonError {
            .invalidFlag(
                flag: flag,
                message: "\(url.path) line \(line): \(what); each line must be a HellaSwag example (ctx, endings, "
                    + "label), as in hellaswag_val.jsonl")
        }
        var examples: [Example] = []
        let decoder = JSONDecoder()
        for (index, bytes) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            guard bytes.contains(where: { ![0x20, 0x09, 0x0D].contains($0) }) else { continue }
            let line: Line
            do { line = try decoder.decode(Line.self, from: Data(bytes)) } catch let error as DecodingError {
                throw refuse(lineNumber, describe(error))
            }
            guard line.endings.count == endingsPerExample else {
                throw refuse(lineNumber, "endings has \(line.endings.count) entries, not \(endingsPerExample)")
            }
            guard (0..<endingsPerExample).contains(line.label.value) else {
                throw refuse(lineNumber, "label \(line.label.value) is not 0, 1, 2 or 3")
            }
            guard !line.ctx.isEmpty else { throw refuse(lineNumber, "ctx is empty") }
            examples.append(
                Example(line: lineNumber, context: line.ctx, endings: line.endings, label: line.label.value))
        }
        guard !examples.isEmpty else {
            throw BatonError.invalidFlag(
                flag: flag, message: "\(url.path): no examples (an empty file); give a HellaSwag JSONL file")
        }
        return examples
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): return "no \"\(key.stringValue)\" key"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined()
            return path.isEmpty ? "not a JSON object" : "\"\(path)\" has the wrong type (\(context.debugDescription))"
        case .dataCorrupted: return "not JSON"
        @unknown default: return "not a HellaSwag example"
        }
    }

    // MARK: tokens

    /// The examples as tokens: ctx, and " " + each ending (the space as llm.c puts it, since the
    /// tokenizers split words with their leading space). An example whose longest row does not fit
    /// the model (more than contextLength + 1 tokens: contextLength inputs and their targets) is
    /// refused, as llm.c's loader refuses one (it asserts); nothing is truncated.
    public static func tokenize(
        _ examples: [Example], tokenizer: TextTokenizer, contextLength: Int, vocabularySize: Int, file: URL,
        flag: String = "--hellaswag"
    ) throws -> [TokenizedExample] {
        try examples.map { example in
            let context = tokenizer.encode(example.context)
            let endings = example.endings.map { tokenizer.encode(" " + $0) }
            let tokenized = TokenizedExample(
                line: example.line, label: example.label, context: context, endings: endings)
            let longest = tokenized.longestRow
            guard longest <= contextLength + 1 else {
                throw BatonError.invalidFlag(
                    flag: flag,
                    message: "\(file.path) line \(example.line): context and ending are \(longest) tokens, more than "
                        + "the model reads (context \(contextLength) + 1); examples are never truncated: use a model "
                        + "of a longer context, or leave the example out")
            }
            if let bad = (context + endings.joined()).first(where: { Int($0) >= vocabularySize }) {
                throw BatonError.invalidFlag(
                    flag: flag,
                    message: "\(file.path) line \(example.line): token \(bad) is not below the model's vocabulary "
                        + "\(vocabularySize); score with the tokenizer the model was trained with")
            }
            return tokenized
        }
    }

    // MARK: scoring

    /// The rows of one forward pass and their length for scoring `examples` on `model`: the
    /// longest row's inputs (never past the context), and up to 8 examples (32 rows) a pass, fewer
    /// where their logits would pass 256 MiB.
    public static func shape(for examples: [TokenizedExample], model: GPT) -> (rows: Int, T: Int) {
        let T = min(model.config.contextLength, max(1, (examples.map(\.longestRow).max() ?? 2) - 1))
        let perPass = max(1, min(8, (1 << 26) / max(1, endingsPerExample * T * model.config.paddedVocabularySize)))
        return (min(perPass, max(1, examples.count)) * endingsPerExample, T)
    }

    /// Scores `examples`, `rows / 4` of them per forward pass of [rows, T] (padded with token 0
    /// past each row's end and in rows no example fills; padding is never counted). Rows must be at
    /// least 4 and every example must fit T + 1 tokens.
    public static func score(model: GPT, examples: [TokenizedExample], rows: Int, T: Int) throws -> [Score] {
        precondition(rows >= endingsPerExample)
        let perPass = rows / endingsPerExample
        var scores: [Score] = []
        scores.reserveCapacity(examples.count)
        var start = 0
        while start < examples.count {
            let batch = examples[start..<min(start + perPass, examples.count)]
            var inputs = [Int32](repeating: 0, count: rows * T), targets = inputs
            for (e, example) in batch.enumerated() {
                for (i, ending) in example.endings.enumerated() {
                    let tokens = example.context + ending, row = (e * endingsPerExample + i) * T
                    precondition(tokens.count <= T + 1, "a HellaSwag row longer than T + 1")
                    for t in 0..<(tokens.count - 1) {
                        inputs[row + t] = tokens[t]
                        targets[row + t] = tokens[t + 1]
                    }
                }
            }
            try model.forward(
                inputs: inputs, targets: targets, B: rows, T: T, lossScaleForBackward: nil, lossesInto: nil)
            let losses = try model.lastLosses()
            for (e, example) in batch.enumerated() {
                var sums: [Double] = [], means: [Double] = []
                for (i, ending) in example.endings.enumerated() {
                    // Position t predicts token t + 1: the ending's tokens are predicted from the
                    // context's last position on.
                    let row = (e * endingsPerExample + i) * T
                    let first = example.context.count - 1
                    var sum = 0.0
                    for t in first..<(first + ending.count) { sum += Double(losses[row + t]) }
                    sums.append(sum)
                    means.append(sum / Double(ending.count))
                }
                scores.append(Score(label: example.label, sums: sums, means: means))
            }
            start += batch.count
        }
        return scores
    }

    /// The contiguous share of `count` examples rank `rank` of `size` scores (llm.c's split).
    public static func share(count: Int, rank: Int, size: Int) -> Range<Int> {
        let each = (count + size - 1) / size
        let lower = min(count, rank * each)
        return lower..<min(count, lower + each)
    }
}

/// The first index of the smallest value.
private func lowest(_ values: [Double]) -> Int {
    var best = 0
    for index in values.indices where values[index] < values[best] { best = index }
    return best
}
