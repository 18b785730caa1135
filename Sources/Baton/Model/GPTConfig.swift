/// The shape of a GPT-2 model. The defaults are the small model `baton train` trains on the bundled
/// corpus.
public struct GPTConfig: Codable, Equatable, Sendable {
    /// Longest sequence the position embedding covers (GPT-2's n_positions).
    @Setting("--seq-len", "T", "context length (default {})", .whole(min: 1, max: 65536), resume: .refuse())
    public var contextLength = 64
    @Setting("--layers", "N", "transformer blocks (default {})", .whole(min: 1, max: 1024), resume: .refuse())
    public var layers = 4
    @Setting("--heads", "N", "attention heads (default {})", .whole(min: 1, max: 1024), resume: .refuse())
    public var heads = 4
    @Setting("--embd", "C", "channels (default {})", .whole(min: 1, max: 65536), resume: .refuse())
    public var channels = 128
    @Setting(
        "--vocab-size", "V", "vocabulary size; token ids must be below it (default {}, bytes)",
        .whole(min: 1, max: nil), resume: .refuse())
    public var vocabularySize = 256

    /// The vocabulary rounded up to a multiple of 64 (50,257 -> 50,304), as llm.c pads it: the
    /// token embedding and the logits have this many rows/columns in memory, so the LM head's
    /// matmuls have aligned leading dimensions. The rows past the vocabulary stay zero and their
    /// logits are masked; checkpoints and exports hold the vocabulary's rows only.
    public var paddedVocabularySize: Int { (vocabularySize + 63) / 64 * 64 }

    public init() {}

    public init(contextLength: Int, vocabularySize: Int, layers: Int, heads: Int, channels: Int) {
        self.contextLength = contextLength
        self.vocabularySize = vocabularySize
        self.layers = layers
        self.heads = heads
        self.channels = channels
    }

    /// One number of the shape: its key in config.json (its property's name), its flag, and the key
    /// GPT-2's config.json gives it.
    public enum Field: String, CaseIterable, Sendable {
        case contextLength, vocabularySize, layers, heads, channels

        public var flag: String { TrainingConfig.settings.first { $0.key == "model." + rawValue }!.flag }

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
        for entry in SettingTable.entries(of: self) {
            let field = Field(rawValue: entry.key)!
            if let text = entry.violation { return (field, "\(name(field)) \(text)") }
        }
        if channels % heads != 0 {
            return (.channels, "\(name(.channels)) \(channels) is not divisible by \(name(.heads)) \(heads)")
        }
        // Token ids are Int32 in Baton (uint32 in Llama 3-format shards).
        if vocabularySize > Int(Int32.max) {
            return (
                .vocabularySize,
                "\(name(.vocabularySize)) \(vocabularySize) is larger than token ids can be (\(Int32.max))"
            )
        }
        return nil
    }
}
