/// GPT-2: learned position embeddings, pre-LayerNorm blocks with causal self-attention and a 4x
/// tanh-GELU MLP, a final LayerNorm, and an LM head tied to the token embedding.
/// Forward and backward are written as calls to `Device` ops, following llm.c's train_gpt2.c.
public final class GPT {
    typealias Affine = ParameterTensors<Tensor>.Affine

    public let config: GPTConfig
    public let layout: ParameterLayout
    public let device: Device
    /// All parameters, flat, in `layout` order.
    public let parameters: Tensor
    /// Gradients, same layout; backward accumulates into them. Gradient accumulation swaps in
    /// buffers of its own (GradientTree), so this is whichever buffer holds the current sum.
    public internal(set) var gradients: Tensor {
        didSet { gradientTensors = ParameterTensors(layout: layout, buffer: gradients) }
    }

    /// Typed views (ParameterTensors) of `parameters`, of `gradients`, and of the weights as the
    /// matmuls read them: the bf16 copy in bf16, `parameters` themselves otherwise.
    let parameterTensors: ParameterTensors<Tensor>
    private(set) var gradientTensors: ParameterTensors<Tensor>
    private var matmulTensors: ParameterTensors<Tensor>

    private var activations: Activations?
    /// In bf16, a bf16 copy of `parameters` for the matmuls (made afresh at each forward pass, so
    /// it is never stale: one pass over the weights); nil in fp32 and tf32, whose matmuls read
    /// `parameters` themselves.
    private var weightCopy: Tensor? {
        didSet { matmulTensors = weightCopy.map { ParameterTensors(layout: layout, buffer: $0) } ?? parameterTensors }
    }

    public init(config: GPTConfig, device: Device) throws {
        try config.validate()
        self.config = config
        self.device = device
        self.layout = ParameterLayout(config: config)
        self.parameters = try device.allocate(floats: layout.totalCount)
        self.gradients = try device.allocate(floats: layout.totalCount)
        parameterTensors = ParameterTensors(layout: layout, buffer: parameters)
        gradientTensors = ParameterTensors(layout: layout, buffer: gradients)
        matmulTensors = parameterTensors
    }

    /// Parameters the model has (the embedding's padded rows are not parameters).
    public var parameterCount: Int { layout.storedCount }

    /// A parameter by its name in the layout (as files and tests name it).
    public func parameter(_ name: String) -> Tensor { layout.tensor(named: name, in: parameters) }
    public func gradient(_ name: String) -> Tensor { layout.tensor(named: name, in: gradients) }

    /// GPT-2's initialisation: normal(0, 0.02) for weights and embeddings, 0.02/sqrt(2·layers) for
    /// the residual projections, zero biases, LayerNorm weights one. Deterministic in the seed.
    public func initializeParameters(seed: UInt64) throws {
        var host = [Float](repeating: 0, count: layout.totalCount)
        var generator = RandomGenerator(seed: seed)
        let projectionStd = 0.02 / (2.0 * Double(config.layers)).squareRoot()
        for spec in layout.specs {
            let range = spec.offset..<(spec.offset + spec.count)
            switch spec.role {
            case .embedding, .linearWeight:
                for i in range { host[i] = Float(0.02 * generator.nextNormal()) }
            case .residualProjectionWeight:
                for i in range { host[i] = Float(projectionStd * generator.nextNormal()) }
            case .layerNormWeight:
                for i in range { host[i] = 1 }
            case .bias, .layerNormBias:
                break
            }
        }
        try device.upload(host, to: parameters)
    }

    /// The activations for (B, T) in the device's current precision (made anew when either
    /// changed), with the bf16 weight copy where the precision stores activations in bf16.
    private func activations(B: Int, T: Int) throws -> Activations {
        let element = device.activationElement
        if let current = activations, current.B == B, current.T == T, current.element == element { return current }
        activations = nil  // free the old set before allocating a new one
        weightCopy = nil
        if element != .float32 { weightCopy = try device.allocate(activations: layout.totalCount) }
        let fresh = try Activations(config: config, B: B, T: T, device: device)
        activations = fresh
        return fresh
    }

    private func checkShape(tokenCount: Int, B: Int, T: Int) throws {
        guard T >= 1, T <= config.contextLength else {
            throw BatonError("sequence length \(T) is outside 1...\(config.contextLength), the model's context length")
        }
        guard B >= 1, B <= Int(Int32.max) / T else {
            throw BatonError("batch \(B) x \(T) tokens is more rows than the kernels index (2^31)")
        }
        guard tokenCount == B * T else {
            throw BatonError("expected \(B * T) tokens for batch \(B) x \(T), got \(tokenCount)")
        }
    }

    /// Runs the model on inputs [B, T] and returns the mean cross-entropy against targets [B, T].
    /// With `lossScaleForBackward` set, the logits buffer receives d(loss)/d(logits) scaled by it,
    /// ready for `backward()`: pass 1/accumulationSteps to average over micro-batches.
    @discardableResult
    public func forward(
        inputs: [Int32], targets: [Int32], B: Int, T: Int, lossScaleForBackward: Float? = nil
    ) throws -> Float {
        try forward(
            inputs: inputs, targets: targets, B: B, T: T, lossScaleForBackward: lossScaleForBackward, lossesInto: nil)
        return GPT.meanLoss(try lastLosses()[...])
    }

    /// The forward pass without reading anything back: the B*T per-position losses stay on the
    /// device, in `lossesInto` when given (a training step collects its micro-batches' losses
    /// there and reads them once, after the last backward pass, so nothing waits for the GPU
    /// between forward and backward), else where `lastLosses()` reads them.
    func forward(
        inputs: [Int32], targets: [Int32], B: Int, T: Int, lossScaleForBackward: Float?, lossesInto: Tensor?
    ) throws {
        try checkShape(tokenCount: inputs.count, B: B, T: T)
        precondition(targets.count == inputs.count)
        // Only backward() reads the buckets; building them checks the tokens (else the check alone).
        let buckets =
            lossScaleForBackward == nil
            ? nil : try EmbeddingBuckets(tokens: inputs, vocabularySize: config.vocabularySize)
        if buckets == nil { try EmbeddingBuckets.checkInVocabulary(inputs, vocabularySize: config.vocabularySize) }
        let a = try activations(B: B, T: T)
        try device.upload(tokens: inputs, to: a.inputs)
        try device.upload(tokens: targets, to: a.targets)
        if let buckets { try a.buckets.upload(buckets, on: device) }
        try forwardToLogits(a)
        let N = B * T
        let losses = lossesInto ?? a.losses
        precondition(losses.count >= N, "losses buffer too small")
        let dloss = lossScaleForBackward.map { $0 / Float(N) } ?? 0
        try device.softmaxCrossEntropy(
            losses: losses, dlogits: lossScaleForBackward == nil ? nil : a.logits,
            logits: a.logits, targets: a.targets, N: N, V: config.vocabularySize,
            paddedV: config.paddedVocabularySize, dloss: dloss)
    }

    /// The mean of per-position losses, summed in order in double precision: every loss Baton
    /// reports is this, whichever path read the losses back.
    static func meanLoss(_ losses: ArraySlice<Float>) -> Float {
        var sum = 0.0
        for loss in losses { sum += Double(loss) }
        return Float(sum / Double(losses.count))
    }

    /// Per-position losses, [B*T], of the last `forward(...)` that returned a loss (a training
    /// step keeps its own: see TrainingStep.accumulateGradients).
    public func lastLosses() throws -> [Float] {
        guard let a = activations else { return [] }
        return try device.download(a.losses.slice(0, a.B * a.T))
    }

    /// Runs the model on inputs [B, T] and returns the logits [B, T, V] (for sampling and tests).
    public func logits(inputs: [Int32], B: Int, T: Int) throws -> [Float] {
        try checkShape(tokenCount: inputs.count, B: B, T: T)
        try EmbeddingBuckets.checkInVocabulary(inputs, vocabularySize: config.vocabularySize)
        let a = try activations(B: B, T: T)
        try device.upload(tokens: inputs, to: a.inputs)
        try forwardToLogits(a)
        let V = config.vocabularySize, Vp = config.paddedVocabularySize
        let padded = try device.download(a.logits.slice(0, B * T * Vp))
        if V == Vp { return padded }
        // Each row's first V columns, copied row by row.
        return [Float](unsafeUninitializedCapacity: B * T * V) { rows, count in
            padded.withUnsafeBufferPointer { source in
                for row in 0..<(B * T) {
                    (rows.baseAddress! + row * V).initialize(from: source.baseAddress! + row * Vp, count: V)
                }
            }
            count = B * T * V
        }
    }

    private func forwardToLogits(_ a: Activations) throws {
        let B = a.B, T = a.T, C = config.channels, NH = config.heads, N = B * T, V = config.paddedVocabularySize
        let d = device, w = parameterTensors
        if let weightCopy { try d.toActivation(out: weightCopy, input: parameters) }
        try d.encoderForward(
            out: a.encoded, tokens: a.inputs, wte: w.tokenEmbedding, wpe: w.positionEmbedding, B: B, T: T, C: C)
        // Each block's residual adds are fused with the LayerNorm that follows them (the next
        // block's ln_1, or ln_f after the last block); only the first ln_1 stands alone.
        try d.layernormForward(
            out: a.layers[0].ln1, mean: a.layers[0].ln1Mean, rstd: a.layers[0].ln1Rstd, input: a.encoded,
            weight: w.blocks[0].ln1.weight, bias: w.blocks[0].ln1.bias, N: N, C: C)
        var residual = a.encoded
        for (index, l) in a.layers.enumerated() {
            let block = w.blocks[index], matmul = matmulTensors.blocks[index]
            try linear(out: l.qkv, input: l.ln1, layer: matmul.qkv, N: N, inFeatures: C, outFeatures: 3 * C)
            try d.attentionForward(
                out: l.attentionOutput, saved: l.attentionSaved, qkv: l.qkv, scratch: a.attentionScratch, B: B, T: T,
                C: C, NH: NH)
            try linear(
                out: l.attentionProjection, input: l.attentionOutput, layer: matmul.attentionProjection, N: N,
                inFeatures: C, outFeatures: C)
            try d.residualLayernormForward(
                residual: l.residualAfterAttention, out: l.ln2, mean: l.ln2Mean, rstd: l.ln2Rstd, a: residual,
                b: l.attentionProjection, weight: block.ln2.weight, bias: block.ln2.bias, N: N, C: C)
            try linear(
                out: l.fc, geluOut: l.fcGelu, input: l.ln2, layer: matmul.fc, N: N, inFeatures: C, outFeatures: 4 * C)
            try linear(
                out: l.fcProjection, input: l.fcGelu, layer: matmul.mlpProjection, N: N, inFeatures: 4 * C,
                outFeatures: C)
            let isLast = index + 1 == a.layers.count
            let next =
                isLast
                ? (out: a.lnf, mean: a.lnfMean, rstd: a.lnfRstd, norm: w.finalNorm)
                : (
                    out: a.layers[index + 1].ln1, mean: a.layers[index + 1].ln1Mean, rstd: a.layers[index + 1].ln1Rstd,
                    norm: w.blocks[index + 1].ln1
                )
            try d.residualLayernormForward(
                residual: l.residualAfterMLP, out: next.out, mean: next.mean, rstd: next.rstd,
                a: l.residualAfterAttention, b: l.fcProjection, weight: next.norm.weight,
                bias: next.norm.bias, N: N, C: C)
            residual = l.residualAfterMLP
        }
        // Tied LM head: logits = lnf @ wte^T, over the padded rows (their logits are zero, and masked).
        try d.matmul(
            c: a.logits, a: a.lnf, b: matmulTensors.tokenEmbedding, M: N, N: V, K: C,
            transposeA: false, transposeB: true, beta: 0)
    }

    /// out[N, outFeatures] = input[N, inFeatures] @ weight[inFeatures, outFeatures] + bias, and
    /// geluOut = GELU(out) where asked: one op (on a GPU, the bias and GELU in cuBLASLt's epilogue).
    private func linear(
        out: Tensor, geluOut: Tensor? = nil, input: Tensor, layer: Affine, N: Int, inFeatures: Int,
        outFeatures: Int
    ) throws {
        try device.linearForward(
            out: out, geluOut: geluOut, input: input, weight: layer.weight, bias: layer.bias, N: N,
            inFeatures: inFeatures, outFeatures: outFeatures)
    }

    /// Given dout [N, outFeatures], accumulates the weight and bias gradients into `gradient` and
    /// writes dinput (unless nil: the caller computes it another way).
    private func linearBackward(
        dinput: Tensor?, dout: Tensor, input: Tensor, layer: Affine, gradient: Affine, N: Int,
        inFeatures: Int, outFeatures: Int
    ) throws {
        if let dinput {
            try device.matmul(
                c: dinput, a: dout, b: layer.weight, M: N, N: inFeatures, K: outFeatures,
                transposeA: false, transposeB: true, beta: 0)
        }
        try device.matmul(
            c: gradient.weight, a: input, b: dout, M: inFeatures, N: outFeatures, K: N,
            transposeA: true, transposeB: false, beta: 1)
        try device.biasBackward(dbias: gradient.bias, dout: dout, N: N, OC: outFeatures)
    }

    public func zeroGradients() throws { try device.fill(gradients, with: 0) }

    /// Backpropagates the last `forward(..., lossScaleForBackward:)` and adds into `gradients`.
    public func backward() throws {
        guard let a = activations else { preconditionFailure("backward() before forward()") }
        let B = a.B, T = a.T, C = config.channels, NH = config.heads, N = B * T, V = config.paddedVocabularySize
        let d = device, w = parameterTensors, g = gradientTensors
        let dlogits = a.logits
        // Tied head: dlnf = dlogits @ wte; dwte += dlogits^T @ lnf (the padded columns' dlogits
        // are zero, so the padded rows add nothing and get no gradient).
        try d.matmul(
            c: a.dln, a: dlogits, b: matmulTensors.tokenEmbedding, M: N, N: C, K: V,
            transposeA: false, transposeB: false, beta: 0)
        try d.matmul(
            c: g.tokenEmbedding, a: dlogits, b: a.lnf, M: V, N: C, K: N,
            transposeA: true, transposeB: false, beta: 1)
        // The residual stream's gradient lives in one buffer; each LayerNorm backward adds into it,
        // and (in bf16) writes the sum's bf16 copy too, for the matmuls and bias gradients that
        // read it next: dmatmul is where they read it (dresidual itself in float32).
        try d.fill(a.dresidual, with: 0)
        let copy = a.dresidualActivation.element == a.dresidual.element ? nil : a.dresidualActivation,
            dmatmul = a.dresidualActivation
        let lastResidual = a.layers.last?.residualAfterMLP ?? a.encoded
        try d.layernormBackward(
            dinput: a.dresidual, dinputActivation: copy, dweight: g.finalNorm.weight,
            dbias: g.finalNorm.bias, dout: a.dln, input: lastResidual, weight: w.finalNorm.weight,
            mean: a.lnfMean, rstd: a.lnfRstd, N: N, C: C)
        for index in stride(from: config.layers - 1, through: 0, by: -1) {
            let l = a.layers[index], block = w.blocks[index], matmul = matmulTensors.blocks[index],
                gradient = g.blocks[index]
            let residualIn = index == 0 ? a.encoded : a.layers[index - 1].residualAfterMLP
            // The MLP's output projection and its GELU, backwards: dfc in one op, then the weight's and bias's
            // gradients.
            let dmlp = dmatmul
            try d.matmulGeluBackward(
                dinput: a.dfc, dout: dmlp, weight: matmul.mlpProjection.weight, preGelu: l.fc, N: N,
                inFeatures: 4 * C, outFeatures: C)
            try linearBackward(
                dinput: nil, dout: dmlp, input: l.fcGelu, layer: matmul.mlpProjection, gradient: gradient.mlpProjection,
                N: N,
                inFeatures: 4 * C, outFeatures: C)
            try linearBackward(
                dinput: a.dln, dout: a.dfc, input: l.ln2, layer: matmul.fc, gradient: gradient.fc, N: N,
                inFeatures: C, outFeatures: 4 * C)
            try d.layernormBackward(
                dinput: a.dresidual, dinputActivation: copy, dweight: gradient.ln2.weight, dbias: gradient.ln2.bias,
                dout: a.dln, input: l.residualAfterAttention, weight: block.ln2.weight,
                mean: l.ln2Mean, rstd: l.ln2Rstd, N: N, C: C)
            try linearBackward(
                dinput: a.dattentionOutput, dout: dmatmul, input: l.attentionOutput, layer: matmul.attentionProjection,
                gradient: gradient.attentionProjection, N: N, inFeatures: C, outFeatures: C)
            try d.attentionBackward(
                dqkv: a.dqkv, scratch: a.attentionScratch, dout: a.dattentionOutput, qkv: l.qkv, out: l.attentionOutput,
                saved: l.attentionSaved,
                B: B, T: T, C: C, NH: NH)
            try linearBackward(
                dinput: a.dln, dout: a.dqkv, input: l.ln1, layer: matmul.qkv, gradient: gradient.qkv, N: N,
                inFeatures: C, outFeatures: 3 * C)
            // The first block's ln_1 feeds only the embedding's gradient, which reads float32: no copy.
            try d.layernormBackward(
                dinput: a.dresidual, dinputActivation: index == 0 ? nil : copy, dweight: gradient.ln1.weight,
                dbias: gradient.ln1.bias, dout: a.dln, input: residualIn, weight: block.ln1.weight,
                mean: l.ln1Mean, rstd: l.ln1Rstd, N: N, C: C)
        }
        try d.encoderBackward(
            dwte: g.tokenEmbedding, dwpe: g.positionEmbedding,
            dout: a.dresidual, tokens: a.inputs, buckets: a.buckets, B: B, T: T, C: C)
    }
}
