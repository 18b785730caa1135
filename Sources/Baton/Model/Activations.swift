/// Every activation a forward pass keeps for the backward pass, and the gradient scratch the
/// backward pass reuses layer by layer. Allocated once for a (batch, length) and reused every step.
final class Activations {
    struct Layer {
        /// attentionSaved: what the attention's forward pass keeps for its backward (its size is
        /// the device's: B·NH·T² probabilities on the CPU, B·NH·T log-sum-exps with flash attention).
        let ln1, ln1Mean, ln1Rstd, qkv, attentionOutput, attentionSaved, attentionProjection, residualAfterAttention: Tensor
        let ln2, ln2Mean, ln2Rstd, fc, fcGelu, fcProjection, residualAfterMLP: Tensor
    }

    let B: Int, T: Int
    /// How the activations are stored (the device's activationElement when they were made).
    var element: ElementType { lnf.element }
    let encoded: Tensor
    let layers: [Layer]
    let lnf, lnfMean, lnfRstd: Tensor
    /// Logits [B*T, padded V] (the padded columns masked); after a training forward they hold dlogits instead (the fused loss op
    /// writes the gradient in place).
    let logits: Tensor
    let losses: Tensor
    let inputs: TokenTensor
    let targets: TokenTensor
    /// The inputs' rows grouped by token, for the embedding's gradient (uploaded with the inputs).
    var buckets: DeviceBuckets

    // Gradient scratch. The residual stream's gradient is float32 (LayerNorm's backward adds into
    // it); dresidualActivation is where the matmuls read it: itself in float32 storage, in bf16 a
    // bf16 copy that each LayerNorm backward writes beside its sum.
    let dresidual, dresidualActivation, dln, dattentionOutput, dqkv, dfc, attentionScratch: Tensor

    /// Bytes all of this takes for `config` at (B, T), given the attention's sizes on a device
    /// (Device.attentionSizes, floats) and the activations' storage: the same sums init
    /// allocates, for a memory figure without the memory.
    static func byteCount(config: GPTConfig, B: Int, T: Int, attentionSaved: Int, attentionScratch: Int, element: ElementType) -> Int {
        let C = config.channels, N = B * T, a = element.byteCount
        // Activations: ln1, qkv, attention output, projection, ln2, fc, GELU, MLP projection (16 of [N, C]);
        // float32: the two residuals, the LayerNorms' statistics and what attention keeps.
        let layer = a * 16 * N * C + 4 * (2 * N * C + 4 * N + attentionSaved)
        let gradients = 4 * (N * C + attentionScratch) + a * ((element == .float32 ? 0 : N * C) + N * C + N * C + 3 * N * C + 4 * N * C)
        // encoded, lnf and its statistics, logits, losses, the input and target tokens and the
        // buckets' rows and starts (4 bytes each).
        let top = 4 * N * C + a * N * C + 4 * 2 * N + a * N * config.paddedVocabularySize + 4 * (N + 2 * N + 2 * N + 1)
        return top + config.layers * layer + gradients
    }

    init(config: GPTConfig, B: Int, T: Int, device: Device) throws {
        let C = config.channels, NH = config.heads, N = B * T
        self.B = B
        self.T = T
        func floats(_ count: Int) throws -> Tensor { try device.allocate(floats: count) }
        func activations(_ count: Int) throws -> Tensor { try device.allocate(activations: count) }
        let attentionSizes = device.attentionSizes(B: B, T: T, C: C, NH: NH)
        encoded = try floats(N * C)
        var layers: [Layer] = []
        for _ in 0..<config.layers {
            layers.append(Layer(
                ln1: try activations(N * C), ln1Mean: try floats(N), ln1Rstd: try floats(N), qkv: try activations(N * 3 * C),
                attentionOutput: try activations(N * C), attentionSaved: try floats(attentionSizes.saved),
                attentionProjection: try activations(N * C), residualAfterAttention: try floats(N * C),
                ln2: try activations(N * C), ln2Mean: try floats(N), ln2Rstd: try floats(N), fc: try activations(N * 4 * C),
                fcGelu: try activations(N * 4 * C), fcProjection: try activations(N * C), residualAfterMLP: try floats(N * C)))
        }
        self.layers = layers
        lnf = try activations(N * C)
        lnfMean = try floats(N)
        lnfRstd = try floats(N)
        logits = try activations(N * config.paddedVocabularySize)
        losses = try floats(N)
        inputs = try device.allocate(tokens: N)
        targets = try device.allocate(tokens: N)
        buckets = try DeviceBuckets(device: device, rows: N)
        dresidual = try floats(N * C)
        dresidualActivation = device.activationElement == .float32 ? dresidual : try activations(N * C)
        dln = try activations(N * C)
        dattentionOutput = try activations(N * C)
        dqkv = try activations(N * 3 * C)
        dfc = try activations(N * 4 * C)
        attentionScratch = try floats(attentionSizes.scratch)
    }
}
