import Foundation

/// A decoder-only transformer of either family (GPTConfig.architecture): its parameters, gradients
/// and activations, and the passes common to both. Each family's blocks are its own file:
/// GPT2Blocks.swift and LlamaBlocks.swift, written as calls to `Device` ops (after llm.c's
/// train_gpt2.c and its Llama 3 branch).
public final class GPT {
    public let config: GPTConfig
    public let layout: ParameterLayout
    public let device: Device
    /// All parameters, flat, in `layout` order.
    public let parameters: Tensor
    /// Gradients, same layout; backward accumulates into them. Gradient accumulation swaps in
    /// buffers of its own (GradientTree), so this is whichever buffer holds the current sum.
    public internal(set) var gradients: Tensor

    private var activations: Activations?
    /// What the backward pass recomputes instead of keeping (RecomputeLevel): memory, never the
    /// bits. The next pass allocates its activations anew when this changed.
    public var recompute: RecomputeLevel = .off
    /// In bf16, a bf16 copy of `parameters` for the matmuls (made afresh at each forward pass, so
    /// it is never stale: one pass over the weights); nil in fp32 and tf32, whose matmuls read
    /// `parameters` themselves.
    private(set) var weightCopy: Tensor?

    /// The weights as the matmuls read them: the bf16 copy in bf16, `parameters` themselves otherwise.
    var matmulWeights: Tensor { weightCopy ?? parameters }

    public init(config: GPTConfig, device: Device) throws {
        try config.validate()
        self.config = config
        self.device = device
        self.layout = ParameterLayout(config: config)
        self.parameters = try device.allocate(floats: layout.totalCount)
        self.gradients = try device.allocate(floats: layout.totalCount)
    }

    /// Parameters the model has (the embedding's padded rows are not parameters).
    public var parameterCount: Int { layout.storedCount }

    /// A parameter by its name in the layout (as files and tests name it).
    public func parameter(_ name: String) -> Tensor { layout.tensor(named: name, in: parameters) }
    public func gradient(_ name: String) -> Tensor { layout.tensor(named: name, in: gradients) }

    /// GPT-2's initialisation: normal(0, 0.02) for weights and embeddings, 0.02/sqrt(2·layers) for
    /// the residual projections, zero biases, norm weights one; the Llama family's is the same
    /// without the residual scaling (transformers' initializer_range). Deterministic in the seed.
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
            case .normWeight:
                for i in range { host[i] = 1 }
            case .bias, .layerNormBias:
                break
            }
        }
        try device.upload(host, to: parameters)
    }

    /// Bytes of the activations a pass over (B, T) allocates, in the device's current precision at
    /// this recompute level: what `baton train` and `baton bench` print.
    public func activationByteCount(B: Int, T: Int) -> Int {
        Activations.byteCount(config: config, B: B, T: T, recompute: recompute, device: device)
    }

    /// "activations: 12.3 MiB at batch 12 x 64 (--recompute 1)": the line train and bench print.
    public func activationSummary(B: Int, T: Int) -> String {
        let mebibytes = Double(activationByteCount(B: B, T: T)) / 1_048_576
        return "activations: \(String(format: "%.1f", mebibytes)) MiB at batch \(B) x \(T) (--recompute "
            + "\(recompute.rawValue))"
    }

    /// The activations for (B, T) in the device's current precision at this recompute level (made
    /// anew when any changed), with the bf16 weight copy where the precision stores activations in bf16.
    private func activations(B: Int, T: Int) throws -> Activations {
        let element = device.activationElement
        if let current = activations, current.B == B, current.T == T, current.element == element,
            current.recompute == recompute
        {
            return current
        }
        activations = nil  // free the old set before allocating a new one
        weightCopy = nil
        if element != .float32 { weightCopy = try device.allocate(activations: layout.totalCount) }
        let fresh = try Activations(config: config, B: B, T: T, recompute: recompute, device: device)
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
    /// ready for `backward()`: pass 1/accumulationSteps to average over micro-batches. A negative
    /// target is masked (transformers' labels -100): the mean is over the others (0 when there are
    /// none) and the gradient is of that mean.
    @discardableResult
    public func forward(
        inputs: [Int32], targets: [Int32], B: Int, T: Int, lossScaleForBackward: Float? = nil
    ) throws -> Float {
        let counted = GPT.trainedTargetCount(targets[...])
        let masked = counted < targets.count
        try forward(
            inputs: inputs, targets: targets, B: B, T: T, lossScaleForBackward: lossScaleForBackward, lossesInto: nil,
            dlossPerPosition: masked
                ? lossScaleForBackward.map { GPT.dlossPerPosition(scale: $0, count: counted) } : nil)
        let losses = try lastLosses()[...]
        return masked ? GPT.maskedMeanLoss(losses, count: counted) : GPT.meanLoss(losses)
    }

    /// The forward pass without reading anything back: the B*T per-position losses stay on the
    /// device, in `lossesInto` when given (a training step collects its micro-batches' losses
    /// there and reads them once, after the last backward pass, so nothing waits for the GPU
    /// between forward and backward), else where `lastLosses()` reads them. `dlossPerPosition`,
    /// when given, is each position's d(loss)/d(its loss) in place of lossScaleForBackward / (B*T)
    /// (a masked step's 1 / its count of trained-on targets).
    func forward(
        inputs: [Int32], targets: [Int32], B: Int, T: Int, lossScaleForBackward: Float?, lossesInto: Tensor?,
        dlossPerPosition: Float? = nil
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
        let dloss = lossScaleForBackward == nil ? 0 : dlossPerPosition ?? lossScaleForBackward! / Float(N)
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

    /// The number of targets the loss counts: those not masked (negative).
    static func trainedTargetCount(_ targets: ArraySlice<Int32>) -> Int {
        var count = 0
        for target in targets where target >= 0 { count += 1 }
        return count
    }

    /// A masked loss's d(loss)/d(each position's loss): scale / count, and 0 when nothing is
    /// counted (a step of masked positions only contributes no gradient, never a NaN).
    static func dlossPerPosition(scale: Float, count: Int) -> Float { count == 0 ? 0 : scale / Float(count) }

    /// The sum of per-position losses (masked ones are 0), in order in double precision.
    static func lossSum(_ losses: ArraySlice<Float>) -> Double {
        var sum = 0.0
        for loss in losses { sum += Double(loss) }
        return sum
    }

    /// The mean over `count` counted positions (masked losses are 0, so the sum is theirs); 0 for none.
    static func maskedMeanLoss(_ losses: ArraySlice<Float>, count: Int) -> Float {
        count == 0 ? 0 : Float(lossSum(losses) / Double(count))
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
        if let weightCopy { try device.toActivation(out: weightCopy, input: parameters) }
        switch config.architecture {
        case .gpt2: try gpt2ForwardToLogits(a)
        case .llama: try llamaForwardToLogits(a)
        }
    }

    public func zeroGradients() throws { try device.fill(gradients, with: 0) }

    /// Backpropagates the last `forward(..., lossScaleForBackward:)` and adds into `gradients`.
    public func backward() throws {
        guard let a = activations else { preconditionFailure("backward() before forward()") }
        switch config.architecture {
        case .gpt2: try gpt2Backward(a)
        case .llama: try llamaBackward(a)
        }
    }
}
