/// The shape of a GPT-2 model.
public struct GPTConfig: Codable, Equatable, Sendable {
    /// Longest sequence the position embedding covers (GPT-2's n_positions).
    public var contextLength: Int
    public var vocabularySize: Int
    public var layers: Int
    public var heads: Int
    public var channels: Int

    /// The vocabulary rounded up to a multiple of 64 (50,257 -> 50,304), as llm.c pads it: the
    /// token embedding and the logits have this many rows/columns in memory, so the LM head's
    /// matmuls have aligned leading dimensions. The rows past the vocabulary stay zero and their
    /// logits are masked; checkpoints and exports hold the vocabulary's rows only.
    public var paddedVocabularySize: Int { (vocabularySize + 63) / 64 * 64 }

    public init(contextLength: Int, vocabularySize: Int, layers: Int, heads: Int, channels: Int) {
        self.contextLength = contextLength
        self.vocabularySize = vocabularySize
        self.layers = layers
        self.heads = heads
        self.channels = channels
    }

    /// One number of the shape: the flag that sets it, and the key GPT-2's config.json gives it.
    public enum Field: CaseIterable, Sendable {
        case contextLength, vocabularySize, layers, heads, channels

        public var flag: String {
            switch self {
            case .contextLength: return "--seq-len"
            case .vocabularySize: return "--vocab-size"
            case .layers: return "--layers"
            case .heads: return "--heads"
            case .channels: return "--embd"
            }
        }

        public var huggingFaceKey: String {
            switch self {
            case .contextLength: return "n_positions"
            case .vocabularySize: return "vocab_size"
            case .layers: return "n_layer"
            case .heads: return "n_head"
            case .channels: return "n_embd"
            }
        }
    }

    /// Checks that a shape given by flags can be built: a usage error naming the flag to change.
    public func validate() throws {
        if let (field, text) = problem(naming: \.flag) { throw BatonError.invalidFlag(flag: field.flag, message: text) }
    }

    /// Checks a shape read from `file`, whose keys `key` names: the error names the file and the
    /// key (the user passed no flag, so naming one would point the wrong way).
    public func validate(file: String, key: (Field) -> String) throws {
        if let (_, text) = problem(naming: key) { throw BatonError("\(file): \(text)") }
    }

    /// The first number that cannot be built, and why, with each field called `name(field)`.
    func problem(naming name: (Field) -> String) -> (Field, String)? {
        for (field, value) in [(Field.contextLength, contextLength), (.vocabularySize, vocabularySize), (.layers, layers),
                               (.heads, heads), (.channels, channels)] where value < 1 {
            return (field, "\(name(field)) must be at least 1, got \(value)")
        }
        // Upper bounds keep every size product far from overflow, whatever a file claims.
        for (field, value, limit) in [(Field.contextLength, contextLength, 65536), (.layers, layers, 1024), (.heads, heads, 1024),
                                      (.channels, channels, 65536)] where value > limit {
            return (field, "\(name(field)) \(value) is larger than Baton supports (\(limit))")
        }
        if channels % heads != 0 {
            return (.channels, "\(name(.channels)) \(channels) is not divisible by \(name(.heads)) \(heads)")
        }
        if vocabularySize > 65536 {
            return (.vocabularySize, "\(name(.vocabularySize)) \(vocabularySize) is larger than token shards can hold (65536)")
        }
        return nil
    }
}
