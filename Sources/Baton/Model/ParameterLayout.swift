/// One parameter tensor of the model, named as in Hugging Face's GPT2LMHeadModel or
/// LlamaForCausalLM and stored in its layout (GPT-2's Conv1D weights are (in_features,
/// out_features); the Llama family's nn.Linear weights (out_features, in_features)).
public struct ParameterSpec: Equatable, Sendable {
    public enum Role: Sendable {
        /// normWeight: a LayerNorm's or RMSNorm's scale (initialised to one).
        case embedding, linearWeight, residualProjectionWeight, bias, normWeight, layerNormBias
    }
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

/// All parameters in one flat buffer, in Hugging Face's order (ParameterTensors declares them), so
/// the optimizer and the global norm can each run as one call. Files (checkpoints, Hugging Face
/// weights) find a tensor by its name here; the forward and backward passes read typed views.
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
        var specs: [ParameterSpec] = []
        var offset = 0
        func declare(name: String, shape: [Int], role: ParameterSpec.Role, allocatedRows: Int) {
            let allocated = allocatedRows * shape.dropFirst().reduce(1, *)
            specs.append(ParameterSpec(name: name, shape: shape, role: role, offset: offset, allocated: allocated))
            offset += allocated
        }
        switch config.architecture {
        case .gpt2: _ = ParameterTensors<Void>(config: config, tensor: declare)
        case .llama: _ = LlamaParameterTensors<Void>(config: config, tensor: declare, span: { _, _ in })
        }
        self.specs = specs
        self.totalCount = offset
        self.storedCount = specs.reduce(0) { $0 + $1.count }
        self.indexByName = Dictionary(uniqueKeysWithValues: specs.enumerated().map { ($1.name, $0) })
    }

    public func spec(named name: String) -> ParameterSpec? { indexByName[name].map { specs[$0] } }

    /// The tensor `name` in `buffer`, a flat buffer in this layout: its elements, and with
    /// `padding` the padded rows after them.
    func tensor(named name: String, in buffer: Tensor, padding: Bool = false) -> Tensor {
        guard let spec = spec(named: name) else { preconditionFailure("no parameter \(name)") }
        return buffer.slice(spec.offset, padding ? spec.allocated : spec.count)
    }

    /// The parts of a flat buffer that hold tensors (the padding left out), merged where they
    /// touch, in order: what a checkpoint writes.
    public var storedRanges: [Range<Int>] { merged(specs.map { $0.offset..<($0.offset + $0.count) }) }

    /// The 2-D tensors' elements (weights and embeddings, the embedding's padded rows with them),
    /// merged where they touch: where one AdamW call over the flat buffer applies weight decay.
    public var decayRanges: [Range<Int>] {
        merged(specs.filter(\.decays).map { $0.offset..<($0.offset + $0.allocated) })
    }

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

/// GPT-2's parameter tensors, declared once, one value of T each, as llm.c's ParameterTensors.
/// `ParameterLayout` walks the declaration to lay out the flat buffer (the names, shapes, roles and
/// order come from here), and `ParameterTensors<Tensor>(layout:buffer:)` gives typed views of a
/// flat buffer laid out so: the parameters, their gradients, or the matmuls' bf16 copy.
struct ParameterTensors<T> {
    /// A weight and its bias: a linear (Conv1D) layer's, or a LayerNorm's scale and shift.
    struct Affine {
        let weight, bias: T
    }

    /// One transformer block: ln_1, attention (qkv and its output projection), ln_2, the MLP.
    struct Block {
        let ln1, qkv, attentionProjection, ln2, fc, mlpProjection: Affine
    }

    /// The token embedding with its padded rows, [paddedVocabularySize, C]: the tied LM head reads all of them.
    let tokenEmbedding: T
    let positionEmbedding: T
    let blocks: [Block]
    let finalNorm: Affine

    /// Declares every tensor, in the flat buffer's order: `tensor(name, shape, role, allocatedRows)`
    /// gives the value for the tensor named as in Hugging Face's GPT2LMHeadModel, `allocatedRows` being
    /// the rows it takes in the flat buffer (more than shape[0] for the padded token embedding).
    init(config: GPTConfig, tensor: (String, [Int], ParameterSpec.Role, Int) -> T) {
        let C = config.channels
        func layerNorm(_ name: String) -> Affine {
            Affine(
                weight: tensor(name + ".weight", [C], .normWeight, C),
                bias: tensor(name + ".bias", [C], .layerNormBias, C))
        }
        func linear(
            _ name: String, _ inFeatures: Int, _ outFeatures: Int, _ role: ParameterSpec.Role = .linearWeight
        ) -> Affine {
            Affine(
                weight: tensor(name + ".weight", [inFeatures, outFeatures], role, inFeatures),
                bias: tensor(name + ".bias", [outFeatures], .bias, outFeatures))
        }
        tokenEmbedding = tensor(
            "transformer.wte.weight", [config.vocabularySize, C], .embedding, config.paddedVocabularySize)
        positionEmbedding = tensor(
            "transformer.wpe.weight", [config.contextLength, C], .embedding, config.contextLength)
        blocks = (0..<config.layers).map { layer in
            let p = "transformer.h.\(layer)."
            return Block(
                ln1: layerNorm(p + "ln_1"), qkv: linear(p + "attn.c_attn", C, 3 * C),
                attentionProjection: linear(p + "attn.c_proj", C, C, .residualProjectionWeight),
                ln2: layerNorm(p + "ln_2"),
                fc: linear(p + "mlp.c_fc", C, 4 * C),
                mlpProjection: linear(p + "mlp.c_proj", 4 * C, C, .residualProjectionWeight))
        }
        finalNorm = layerNorm("transformer.ln_f")
    }
}

extension ParameterTensors where T == Tensor {
    /// Views of `buffer`, a flat buffer laid out as `layout` (float32 or the bf16 copy).
    init(layout: ParameterLayout, buffer: Tensor) {
        self.init(config: layout.config) { name, _, _, _ in layout.tensor(named: name, in: buffer, padding: true) }
    }
}
