/// Every activation a forward pass keeps for the backward pass, and the gradient scratch the
/// backward pass reuses layer by layer. Allocated once for a (batch, length, recompute level) and
/// reused every step. Its buffers are read as members of `ActivationBuffers` (a.encoded,
/// a.layers[l].qkv, ...).
@dynamicMemberLookup
final class Activations {
    typealias Layer = ActivationBuffers<Tensor, TokenTensor>.Layer

    let B: Int, T: Int
    /// Which buffers all layers share, recomputed in the backward pass.
    let recompute: RecomputeLevel
    let buffers: ActivationBuffers<Tensor, TokenTensor>
    /// How the activations are stored (the device's activationElement when they were made).
    var element: ElementType { buffers.lnf.element }
    /// The inputs' rows grouped by token, for the embedding's gradient (uploaded with the inputs).
    var buckets: DeviceBuckets

    subscript<Value>(dynamicMember member: KeyPath<ActivationBuffers<Tensor, TokenTensor>, Value>) -> Value {
        buffers[keyPath: member]
    }

    init(config: GPTConfig, B: Int, T: Int, recompute: RecomputeLevel = .off, device: Device) throws {
        self.B = B
        self.T = T
        self.recompute = recompute
        let sizes = device.attentionSizes(B: B, T: T, C: config.channels, NH: config.heads, KV: config.keyValueHeads)
        buffers = try ActivationBuffers(
            config: config, B: B, T: T, attentionSaved: sizes.saved, attentionScratch: sizes.scratch,
            element: device.activationElement, recompute: recompute,
            tensor: { count, element in
                try element == .float32 ? device.allocate(floats: count) : device.allocate(activations: count)
            },
            tokens: { try device.allocate(tokens: $0) })
        buckets = DeviceBuckets(rows: buffers.bucketRows, starts: buffers.bucketStarts)
        if let llama = buffers.llama {
            try device.upload(
                RotaryEmbedding.table(length: T, headSize: config.headSize, theta: config.ropeTheta), to: llama.rope)
        }
    }

    /// Bytes all of this takes for `config` at (B, T), given the attention's sizes on a device
    /// (Device.attentionSizes, floats) and the activations' storage, for a memory figure without
    /// the memory: the sizes of the buffers init allocates, from the same declaration.
    static func byteCount(
        config: GPTConfig, B: Int, T: Int, attentionSaved: Int, attentionScratch: Int, element: ElementType,
        recompute: RecomputeLevel = .off
    ) -> Int {
        var bytes = 0
        _ = ActivationBuffers<Void, Void>(
            config: config, B: B, T: T, attentionSaved: attentionSaved, attentionScratch: attentionScratch,
            element: element, recompute: recompute, tensor: { bytes += $0 * $1.byteCount }, tokens: { bytes += $0 * 4 })
        return bytes
    }

    /// Bytes `Activations(config:B:T:recompute:device:)` allocates on `device` in its current
    /// precision: the figure train and bench print.
    static func byteCount(config: GPTConfig, B: Int, T: Int, recompute: RecomputeLevel, device: Device) -> Int {
        let sizes = device.attentionSizes(B: B, T: T, C: config.channels, NH: config.heads, KV: config.keyValueHeads)
        return byteCount(
            config: config, B: B, T: T, attentionSaved: sizes.saved, attentionScratch: sizes.scratch,
            element: device.activationElement, recompute: recompute)
    }
}

/// Every buffer of the activations, declared once, each one value of Buffer (made by `tensor(count,
/// element type)`) or of Tokens (int32 tokens, made by `tokens(count)`): `Activations.init`
/// allocates them on a device, `Activations.byteCount` sums their sizes. What the recompute level
/// recomputes is one buffer that every layer's member names (the same value in each): at
/// `.activation` fcGelu and hidden, at `.activationAndNorms` also ln1 and ln2.
struct ActivationBuffers<Buffer, Tokens> {
    struct Layer {
        /// attentionSaved: what the attention's forward pass keeps for its backward (its size is
        /// the device's: B·NH·T² probabilities on the CPU, B·NH·T log-sum-exps with flash attention).
        let ln1, ln1Mean, ln1Rstd, qkv, attentionOutput, attentionSaved, attentionProjection,
            residualAfterAttention: Buffer
        let ln2, ln2Mean, ln2Rstd, fc, fcGelu, fcProjection, residualAfterMLP: Buffer
    }

    /// A Llama-family block's activations: the same roles, RMSNorm keeping rstd only, qkv its
    /// NH + 2 KV heads (rotated in place), the MLP's gate and up side by side and SwiGLU's output.
    struct LlamaLayer {
        let ln1, ln1Rstd, qkv, attentionOutput, attentionSaved, attentionProjection, residualAfterAttention: Buffer
        let ln2, ln2Rstd, gateUp, hidden, down, residualAfterMLP: Buffer
    }

    /// What only the Llama family needs beside its layers.
    struct LlamaBuffers {
        /// The rotary table [T, HS/2, 2] (cos, sin), float32.
        let rope: Buffer
        /// The gradient of SwiGLU's output [N, I].
        let dhidden: Buffer
    }

    let encoded: Buffer
    /// GPT-2's blocks, or the Llama family's (the other list empty).
    let layers: [Layer]
    let llamaLayers: [LlamaLayer]
    let llama: LlamaBuffers?
    let lnf, lnfMean, lnfRstd: Buffer
    /// Logits [B*T, padded V] (the padded columns masked); after a training forward they hold dlogits instead (the
    /// fused loss op
    /// writes the gradient in place).
    let logits: Buffer
    let losses: Buffer
    let inputs: Tokens
    let targets: Tokens
    /// Room for the embedding buckets (DeviceBuckets) of B·T rows.
    let bucketRows, bucketStarts: Tokens

    // Gradient scratch. The residual stream's gradient is float32 (LayerNorm's backward adds into
    // it); dresidualActivation is where the matmuls read it: itself in float32 storage, in bf16 a
    // bf16 copy that each LayerNorm backward writes beside its sum.
    // dqkv is qkv's gradient (its NH + 2 KV heads in the Llama family); dfc the MLP's first
    // layer's (GPT-2's fc, [N, 4C]; the Llama family's gate and up, [N, 2I]).
    let dresidual, dresidualActivation, dln, dattentionOutput, dqkv, dfc, attentionScratch: Buffer

    /// `element`: how activations are stored (float32 or bf16); the rest is float32. `recompute`:
    /// which activations are one buffer for all layers.
    init(
        config: GPTConfig, B: Int, T: Int, attentionSaved: Int, attentionScratch: Int, element: ElementType,
        recompute: RecomputeLevel = .off, tensor: (Int, ElementType) throws -> Buffer, tokens: (Int) throws -> Tokens
    ) rethrows {
        let C = config.channels, N = B * T, isLlama = config.architecture == .llama
        func floats(_ count: Int) throws -> Buffer { try tensor(count, .float32) }
        func activations(_ count: Int) throws -> Buffer { try tensor(count, element) }
        encoded = try floats(N * C)
        // The buffers all layers share where they are recomputed: the MLP's activation (GELU's
        // output [N, 4C], SwiGLU's [N, I]) and the norms' outputs [N, C]. (Level 0 allocates in
        // the order it always did.)
        let activationWidth = isLlama ? config.hiddenSize : 4 * C
        let sharedActivation = recompute.recomputesActivation ? try activations(N * activationWidth) : nil
        let sharedLn1 = recompute.recomputesNorms ? try activations(N * C) : nil
        let sharedLn2 = recompute.recomputesNorms ? try activations(N * C) : nil
        var layers: [Layer] = [], llamaLayers: [LlamaLayer] = []
        for _ in 0..<(isLlama ? config.layers : 0) {
            let I = config.hiddenSize
            llamaLayers.append(
                LlamaLayer(
                    ln1: try sharedLn1 ?? activations(N * C), ln1Rstd: try floats(N),
                    qkv: try activations(N * config.qkvWidth),
                    attentionOutput: try activations(N * C), attentionSaved: try floats(attentionSaved),
                    attentionProjection: try activations(N * C), residualAfterAttention: try floats(N * C),
                    ln2: try sharedLn2 ?? activations(N * C), ln2Rstd: try floats(N),
                    gateUp: try activations(N * 2 * I), hidden: try sharedActivation ?? activations(N * I),
                    down: try activations(N * C), residualAfterMLP: try floats(N * C)))
        }
        self.llamaLayers = llamaLayers
        llama =
            isLlama
            ? LlamaBuffers(rope: try floats(T * config.headSize), dhidden: try activations(N * config.hiddenSize))
            : nil
        for _ in 0..<(isLlama ? 0 : config.layers) {
            layers.append(
                Layer(
                    ln1: try sharedLn1 ?? activations(N * C), ln1Mean: try floats(N), ln1Rstd: try floats(N),
                    qkv: try activations(N * 3 * C),
                    attentionOutput: try activations(N * C), attentionSaved: try floats(attentionSaved),
                    attentionProjection: try activations(N * C), residualAfterAttention: try floats(N * C),
                    ln2: try sharedLn2 ?? activations(N * C), ln2Mean: try floats(N), ln2Rstd: try floats(N),
                    fc: try activations(N * 4 * C),
                    fcGelu: try sharedActivation ?? activations(N * 4 * C), fcProjection: try activations(N * C),
                    residualAfterMLP: try floats(N * C)))
        }
        self.layers = layers
        lnf = try activations(N * C)
        lnfMean = try floats(N)
        lnfRstd = try floats(N)
        logits = try activations(N * config.paddedVocabularySize)
        losses = try floats(N)
        inputs = try tokens(N)
        targets = try tokens(N)
        bucketRows = try tokens(max(N, 1))
        bucketStarts = try tokens(N + 1)
        dresidual = try floats(N * C)
        dresidualActivation = element == .float32 ? dresidual : try activations(N * C)
        dln = try activations(N * C)
        dattentionOutput = try activations(N * C)
        dqkv = try activations(N * (isLlama ? config.qkvWidth : 3 * C))
        dfc = try activations(N * (isLlama ? 2 : 1) * config.hiddenSize)
        self.attentionScratch = try floats(attentionScratch)
    }
}
