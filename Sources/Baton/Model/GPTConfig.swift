/// Which model family a shape describes.
public enum ModelArchitecture: String, SettingMode {
    /// GPT-2: learned positions, LayerNorm with biases, a 4x GELU MLP, the LM head tied to wte.
    case gpt2
    /// The Llama family (Llama, Qwen2, SmolLM, minimind, OLMo): rotary positions, RMSNorm, a SwiGLU
    /// MLP, grouped-query attention, no biases (q/k/v biases optional, as Qwen2).
    case llama
}

/// The shape of a model, GPT-2 or the Llama family. The defaults are the small GPT-2 `baton
/// train` trains on the bundled corpus; the Llama family's own settings (`--kv-heads` and those
/// after it) take the family's defaults where unset, and GPT-2 takes none of them.
public struct GPTConfig: Codable, Equatable, Sendable {
    @Setting("--arch", "model family: gpt2 (default) or llama (RoPE, RMSNorm, SwiGLU, GQA)", resume: .refuse())
    public var architecture = ModelArchitecture.gpt2
    /// GPT-2: the position table's rows (n_positions). The Llama family has no table: the longest
    /// sequence it trains on (exported as max_position_embeddings).
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
    @Setting(
        "--kv-heads", "N", "llama: key/value heads (grouped-query attention; 1: multi-query; default: --heads)",
        .whole(min: 1, max: 1024), resume: .refuse())
    public var kvHeads: Int? = nil
    @Setting(
        "--intermediate-size", "N",
        "llama: SwiGLU width (default: 8/3 x channels rounded up to a multiple of 64, as minimind)",
        .whole(min: 1, max: 1 << 20), resume: .refuse())
    public var intermediateSize: Int? = nil
    @Setting("--rope-theta", "X", "llama: rotary base (default {})", .nonNegative, resume: .refuse())
    public var ropeTheta: Float = 10000
    @Setting("--norm-eps", "X", "llama: RMSNorm epsilon (default {})", .nonNegative, resume: .refuse())
    public var normEpsilon: Float = 1e-5
    @Setting(
        "--tie-embeddings", "true|false", "llama: the LM head shares the token embedding (default: false; GPT-2 ties)",
        resume: .refuse())
    public var tieEmbeddings: Bool? = nil
    @Setting(
        "--attention-bias", "true|false", "llama: q, k, v projections have biases, as Qwen2 (default {})",
        resume: .refuse())
    public var attentionBias = false

    /// The vocabulary rounded up to a multiple of 64 (50,257 -> 50,304), as llm.c pads it: the
    /// token embedding and the logits have this many rows/columns in memory, so the LM head's
    /// matmuls have aligned leading dimensions. The rows past the vocabulary stay zero and their
    /// logits are masked; checkpoints and exports hold the vocabulary's rows only.
    public var paddedVocabularySize: Int { (vocabularySize + 63) / 64 * 64 }

    /// Channels per attention head.
    public var headSize: Int { channels / heads }
    /// Key/value heads: `kvHeads`, or one per query head.
    public var keyValueHeads: Int { kvHeads ?? heads }
    /// The MLP's hidden width: GPT-2's 4C, or the Llama family's SwiGLU width.
    public var hiddenSize: Int {
        switch architecture {
        case .gpt2: return 4 * channels
        case .llama: return intermediateSize ?? 64 * ((channels * 8 / 3 + 63) / 64)
        }
    }
    /// Whether the LM head is the token embedding (GPT-2 always; the Llama family where asked).
    public var tiedEmbeddings: Bool { architecture == .gpt2 || tieEmbeddings == true }
    /// Width of a row of q, k and v side by side: NH + 2 KV heads.
    public var qkvWidth: Int { (heads + 2 * keyValueHeads) * headSize }

    /// The shape in words, as a run's first line gives it.
    public var summary: String {
        let heads =
            keyValueHeads == self.heads ? "\(self.heads) heads" : "\(self.heads) heads (\(keyValueHeads) key/value)"
        let family =
            architecture == .gpt2
            ? ""
            : "Llama family (RMSNorm, RoPE theta \(ropeTheta.settingText), SwiGLU \(hiddenSize)"
                + (attentionBias ? ", q/k/v biases" : "") + (tiedEmbeddings ? ", tied head" : "") + "), "
        return "\(family)\(layers) layers, \(heads), \(channels) channels, context \(contextLength), vocabulary "
            + "\(vocabularySize)"
    }

    public init() {}

    public init(contextLength: Int, vocabularySize: Int, layers: Int, heads: Int, channels: Int) {
        self.contextLength = contextLength
        self.vocabularySize = vocabularySize
        self.layers = layers
        self.heads = heads
        self.channels = channels
    }

    /// A file written before the Llama family holds GPT-2's five numbers only: the keys added
    /// since take their defaults (a GPT-2 shape), so old checkpoints resume as they were.
    public init(from decoder: Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func read<Value>(_ setting: inout Setting<Value>, _ key: CodingKeys) throws {
            if container.contains(key) {
                setting.wrappedValue = try container.decode(Setting<Value>.self, forKey: key).wrappedValue
            }
        }
        for key in [CodingKeys.contextLength, .vocabularySize, .layers, .heads, .channels]
        where !container.contains(key) {
            throw DecodingError.keyNotFound(
                key, .init(codingPath: container.codingPath, debugDescription: "no \(key.stringValue)"))
        }
        try read(&_architecture, .architecture)
        try read(&_contextLength, .contextLength)
        try read(&_layers, .layers)
        try read(&_heads, .heads)
        try read(&_channels, .channels)
        try read(&_vocabularySize, .vocabularySize)
        try read(&_kvHeads, .kvHeads)
        try read(&_intermediateSize, .intermediateSize)
        try read(&_ropeTheta, .ropeTheta)
        try read(&_normEpsilon, .normEpsilon)
        try read(&_tieEmbeddings, .tieEmbeddings)
        try read(&_attentionBias, .attentionBias)
    }

    /// One setting of the shape: its key in config.json (its property's name), its flag, and the
    /// key Hugging Face's config.json gives it (GPT-2's names for GPT-2's five numbers,
    /// transformers' Llama names for the rest).
    public enum Field: String, CaseIterable, Sendable {
        case architecture, contextLength, layers, heads, channels, vocabularySize, kvHeads, intermediateSize,
            ropeTheta, normEpsilon, tieEmbeddings, attentionBias

        public var flag: String { TrainingConfig.settings.first { $0.key == "model." + rawValue }!.flag }

        public var huggingFaceKey: String {
            switch self {
            case .architecture: return "model_type"
            case .contextLength: return "n_positions"
            case .vocabularySize: return "vocab_size"
            case .layers: return "n_layer"
            case .heads: return "n_head"
            case .channels: return "n_embd"
            case .kvHeads: return "num_key_value_heads"
            case .intermediateSize: return "intermediate_size"
            case .ropeTheta: return "rope_theta"
            case .normEpsilon: return "rms_norm_eps"
            case .tieEmbeddings: return "tie_word_embeddings"
            case .attentionBias: return "attention_bias"
            }
        }

        /// The key transformers' LlamaConfig gives it.
        public var llamaKey: String {
            switch self {
            case .contextLength: return "max_position_embeddings"
            case .layers: return "num_hidden_layers"
            case .heads: return "num_attention_heads"
            case .channels: return "hidden_size"
            default: return huggingFaceKey
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

    /// The first setting that cannot be built, and why, with each field called `name(field)`.
    func problem(naming name: (Field) -> String) -> (Field, String)? {
        for entry in SettingTable.entries(of: self) {
            let field = Field(rawValue: entry.key)!
            if let text = entry.violation { return (field, "\(name(field)) \(text)") }
        }
        if channels % heads != 0 {
            return (.channels, "\(name(.channels)) \(channels) is not divisible by \(name(.heads)) \(heads)")
        }
        if let problem = architecture == .gpt2 ? gpt2Problem(naming: name) : llamaProblem(naming: name) {
            return problem
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

    /// GPT-2 computes none of the Llama family's settings: each must be unset (or its value).
    private func gpt2Problem(naming name: (Field) -> String) -> (Field, String)? {
        let defaults = GPTConfig()
        let foreign: [(Field, Bool)] = [
            (.kvHeads, kvHeads != nil && kvHeads != heads),
            (.intermediateSize, intermediateSize != nil && intermediateSize != 4 * channels),
            (.ropeTheta, ropeTheta != defaults.ropeTheta), (.normEpsilon, normEpsilon != defaults.normEpsilon),
            (.tieEmbeddings, tieEmbeddings == false), (.attentionBias, attentionBias),
        ]
        guard let (field, _) = foreign.first(where: \.1) else { return nil }
        return (
            field,
            "\(name(field)) is a Llama-family setting (\(name(.architecture)) llama), which GPT-2 does not take: "
                + "drop it, or the --model preset or --config file that sets it"
        )
    }

    private func llamaProblem(naming name: (Field) -> String) -> (Field, String)? {
        if heads % keyValueHeads != 0 {
            return (.kvHeads, "\(name(.kvHeads)) \(keyValueHeads) does not divide \(name(.heads)) \(heads)")
        }
        if headSize % 2 != 0 {
            return (.heads, "\(name(.channels)) / \(name(.heads)) = \(headSize) is odd; rotary embeddings need pairs")
        }
        if !(ropeTheta > 1) { return (.ropeTheta, "\(name(.ropeTheta)) must be above 1, got \(ropeTheta)") }
        if !(normEpsilon > 0) { return (.normEpsilon, "\(name(.normEpsilon)) must be above 0, got \(normEpsilon)") }
        return nil
    }
}
