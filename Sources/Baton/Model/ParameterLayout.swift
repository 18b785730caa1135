/// One parameter tensor of the model, named as in Hugging Face's GPT2LMHeadModel and stored in
/// its layout (Conv1D weights are (in_features, out_features)).
public struct ParameterSpec: Equatable, Sendable {
    public enum Role: Sendable { case embedding, linearWeight, residualProjectionWeight, bias, layerNormWeight, layerNormBias }
    public let name: String
    public let shape: [Int]
    public let role: Role
    /// Offset in elements inside the flat parameter buffer.
    public let offset: Int
    /// Elements the tensor holds (what checkpoints store).
    public var count: Int { shape.reduce(1, *) }
    /// Elements it takes in the flat buffer: more than count for the token embedding, whose
    /// padded rows (GPTConfig.paddedVocabularySize) follow it and stay zero.
    public let allocated: Int
    /// AdamW's weight decay applies to 2-D tensors only (weights and embeddings), as in nanoGPT.
    public var decays: Bool { shape.count == 2 }
}

/// All parameters in one flat buffer, in Hugging Face's order, so the optimizer and the global
/// norm can each run as one call and views give each parameter by name.
public struct ParameterLayout: Sendable {
    public let config: GPTConfig
    public let specs: [ParameterSpec]
    /// Elements of the flat buffer, padding included.
    public let totalCount: Int
    /// Elements the tensors hold, padding excluded: the model's parameter count, and what a
    /// checkpoint stores.
    public let storedCount: Int
    private let indexByName: [String: Int]

    public init(config: GPTConfig) {
        self.config = config
        let C = config.channels
        var specs: [ParameterSpec] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int], _ role: ParameterSpec.Role, allocatedRows: Int? = nil) {
            let allocated = (allocatedRows ?? shape[0]) * shape.dropFirst().reduce(1, *)
            let spec = ParameterSpec(name: name, shape: shape, role: role, offset: offset, allocated: allocated)
            specs.append(spec)
            offset += allocated
        }
        add("transformer.wte.weight", [config.vocabularySize, C], .embedding, allocatedRows: config.paddedVocabularySize)
        add("transformer.wpe.weight", [config.contextLength, C], .embedding)
        for layer in 0..<config.layers {
            let p = "transformer.h.\(layer)."
            add(p + "ln_1.weight", [C], .layerNormWeight)
            add(p + "ln_1.bias", [C], .layerNormBias)
            add(p + "attn.c_attn.weight", [C, 3 * C], .linearWeight)
            add(p + "attn.c_attn.bias", [3 * C], .bias)
            add(p + "attn.c_proj.weight", [C, C], .residualProjectionWeight)
            add(p + "attn.c_proj.bias", [C], .bias)
            add(p + "ln_2.weight", [C], .layerNormWeight)
            add(p + "ln_2.bias", [C], .layerNormBias)
            add(p + "mlp.c_fc.weight", [C, 4 * C], .linearWeight)
            add(p + "mlp.c_fc.bias", [4 * C], .bias)
            add(p + "mlp.c_proj.weight", [4 * C, C], .residualProjectionWeight)
            add(p + "mlp.c_proj.bias", [C], .bias)
        }
        add("transformer.ln_f.weight", [C], .layerNormWeight)
        add("transformer.ln_f.bias", [C], .layerNormBias)
        self.specs = specs
        self.totalCount = offset
        self.storedCount = specs.reduce(0) { $0 + $1.count }
        self.indexByName = Dictionary(uniqueKeysWithValues: specs.enumerated().map { ($1.name, $0) })
    }

    public func spec(named name: String) -> ParameterSpec? { indexByName[name].map { specs[$0] } }

    /// The parts of a flat buffer that hold tensors (the padding left out), merged where they
    /// touch, in order: what a checkpoint writes.
    public var storedRanges: [Range<Int>] { merged(specs.map { $0.offset..<($0.offset + $0.count) }) }

    /// The 2-D tensors' elements (weights and embeddings, the embedding's padded rows with them),
    /// merged where they touch: where one AdamW call over the flat buffer applies weight decay.
    public var decayRanges: [Range<Int>] { merged(specs.filter(\.decays).map { $0.offset..<($0.offset + $0.allocated) }) }

    private func merged(_ ranges: [Range<Int>]) -> [Range<Int>] {
        var result: [Range<Int>] = []
        for range in ranges {
            if let last = result.last, last.upperBound == range.lowerBound {
                result[result.count - 1] = last.lowerBound..<range.upperBound
            } else {
                result.append(range)
            }
        }
        return result
    }
}
