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

    // Gradient scratch.
    let dresidual, dln, dattentionOutput, dqkv, dfc, attentionScratch: Tensor

    /// Floats all of this takes for `config` at (B, T), given the attention's sizes on a device
    /// (Device.attentionSizes): the same sums init allocates, for a memory figure without the memory.
    static func floatCount(config: GPTConfig, B: Int, T: Int, attentionSaved: Int, attentionScratch: Int) -> Int {
        let C = config.channels, N = B * T
        // ln1, attention output, projection, residual, ln2, MLP projection, residual: 7 of [N, C].
        let layer = 7 * N * C + 4 * N + 3 * N * C + 2 * 4 * N * C + attentionSaved
        let gradients = 3 * N * C + 3 * N * C + 4 * N * C + attentionScratch
        // encoded, lnf and its statistics, logits, losses, the input and target tokens and the
        // buckets' rows and starts (4 bytes each).
        let top = N * C + N * C + 2 * N + N * config.paddedVocabularySize + N + 2 * N + 2 * N + 1
        return top + config.layers * layer + gradients
    }

    init(config: GPTConfig, B: Int, T: Int, device: Device) throws {
        let C = config.channels, NH = config.heads, N = B * T
        self.B = B
        self.T = T
        func floats(_ count: Int) throws -> Tensor { try device.allocate(floats: count) }
        let attentionSizes = device.attentionSizes(B: B, T: T, C: C, NH: NH)
        encoded = try floats(N * C)
        var layers: [Layer] = []
        for _ in 0..<config.layers {
            layers.append(Layer(
                ln1: try floats(N * C), ln1Mean: try floats(N), ln1Rstd: try floats(N), qkv: try floats(N * 3 * C),
                attentionOutput: try floats(N * C), attentionSaved: try floats(attentionSizes.saved),
                attentionProjection: try floats(N * C), residualAfterAttention: try floats(N * C),
                ln2: try floats(N * C), ln2Mean: try floats(N), ln2Rstd: try floats(N), fc: try floats(N * 4 * C),
                fcGelu: try floats(N * 4 * C), fcProjection: try floats(N * C), residualAfterMLP: try floats(N * C)))
        }
        self.layers = layers
        lnf = try floats(N * C)
        lnfMean = try floats(N)
        lnfRstd = try floats(N)
        logits = try floats(N * config.paddedVocabularySize)
        losses = try floats(N)
        inputs = try device.allocate(tokens: N)
        targets = try device.allocate(tokens: N)
        buckets = try DeviceBuckets(device: device, rows: N)
        dresidual = try floats(N * C)
        dln = try floats(N * C)
        dattentionOutput = try floats(N * C)
        dqkv = try floats(N * 3 * C)
        dfc = try floats(N * 4 * C)
        attentionScratch = try floats(attentionSizes.scratch)
    }
}
