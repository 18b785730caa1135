/// What one optimizer step did.
public struct StepOutcome: Sendable {
    /// Mean loss over the micro-batches.
    public let loss: Float
    /// Global gradient norm before clipping.
    public let gradientNorm: Float
    /// False when the loss or the gradient norm was not finite: nothing was applied.
    public let applied: Bool
    /// A masked (fine-tuning) step's count of trained targets over all its micro-batches and
    /// ranks; nil for unmasked data.
    public var countedTargets: Int? = nil
}

/// One optimizer step: forward and backward over each micro-batch (gradients averaged), the
/// global gradient norm, clipping folded into AdamW's gradient scale, and the update. The one
/// step function: training, `baton bench` and the PyTorch fixture test all call it. It owns what
/// a step needs beside the model and the optimizer: the micro-batches' losses on the device and
/// gradient accumulation's buffers, made once and kept from step to step.
public final class TrainingStep {
    public let model: GPT
    public let optimizer: AdamW
    /// With ranks, this rank's micro-batches are its slice of the step's; the loss and the
    /// gradient are over all of them.
    let parallel: DataParallel?
    private var lossBuffer: Tensor?
    /// Gradient accumulation's buffers, made at the first step that accumulates.
    private lazy var tree = GradientTree(model: model)

    public init(model: GPT, optimizer: AdamW, parallel: DataParallel? = nil) {
        self.model = model
        self.optimizer = optimizer
        self.parallel = parallel
    }

    /// `microBatches`: inputs and targets of B x T tokens each. `updateNumber` is AdamW's 1-based
    /// step for bias correction. A non-finite loss or gradient norm is never applied, nor one that
    /// `shouldApply(loss, gradientNorm)` turns down (the spike guards).
    /// `lossMasked` (supervised fine-tuning data, whose masked targets are -1): the loss is the
    /// sum over the counted targets of all the step's micro-batches, on all ranks, over their
    /// count (transformers' num_items_in_batch), each position's gradient weighted 1/count; a
    /// step with nothing counted has loss 0 and gradient 0. Without it, the mean of the
    /// micro-batches' means, as ever.
    public func run(
        microBatches: [(inputs: [Int32], targets: [Int32])], B: Int, T: Int, learningRate: Float, gradientClip: Float,
        updateNumber: Int, lossMasked: Bool = false, afterBackward: ((GPT) throws -> Void)? = nil,
        shouldApply: (_ loss: Float, _ gradientNorm: Float) -> Bool = { _, _ in true }
    ) throws -> StepOutcome {
        let total = microBatches.count * (parallel?.size ?? 1)
        var counted: Int?
        if lossMasked {
            // Every rank needs the step's count before its backward: one small gather of the counts.
            let local = microBatches.map { Int64(GPT.trainedTargetCount($0.targets[...])) }
            counted = Int(try (parallel?.communicator.allgather(local) ?? local).reduce(0, +))
        }
        var losses = try accumulateGradients(
            microBatches: microBatches, B: B, T: T, scale: 1 / Float(total), countedTargets: counted)
        if let parallel { losses = try parallel.reduce(model: model, losses: losses, slices: zeroSlices) }
        try afterBackward?(model)
        let norm = try gradientNormSquared().squareRoot()
        let loss: Float
        if let counted {
            var sum = 0.0
            for microBatchSum in losses { sum += Double(microBatchSum) }  // in micro-batch order, at any world size
            loss = counted == 0 ? 0 : Float(sum / Double(counted))
        } else {
            var lossSum: Float = 0
            for loss in losses { lossSum += loss }  // in micro-batch order, whatever the world size
            loss = lossSum / Float(total)
        }
        guard loss.isFinite && norm.isFinite && shouldApply(loss, norm) else {
            return StepOutcome(loss: loss, gradientNorm: norm, applied: false, countedTargets: counted)
        }
        try optimizer.update(
            step: updateNumber, learningRate: learningRate,
            gradientScale: AdamW.clipScale(norm: norm, maxNorm: gradientClip))
        // ZeRO-1: each rank updated its slice; every rank gets all of them.
        if let parallel, let zeroSlices { try parallel.allgatherSlices(model.parameters, zeroSlices, on: model.device) }
        return StepOutcome(loss: loss, gradientNorm: norm, applied: true, countedTargets: counted)
    }

    /// With ZeRO-1 over several ranks (an optimizer that holds a slice), the ranks' slices.
    var zeroSlices: OptimizerSlices? {
        guard let parallel, optimizer.isSliced else { return nil }
        return OptimizerSlices(total: model.layout.totalCount, ranks: parallel.size)
    }

    /// The reduced gradient's sum of squares: over the whole buffer, as one process computes it,
    /// unless a reduce-scatter (ZeRO-1 under --reduce fast) left each rank only its slice's sum.
    private func gradientNormSquared() throws -> Float {
        if let parallel, let zeroSlices, !parallel.usesTree {
            return try parallel.normSquared(ofSlicesOf: model.gradients, zeroSlices, on: model.device)
        }
        return try model.device.globalNormSquared(model.gradients)
    }

    /// Forward and backward over the micro-batches, each backward scaled by `scale`, leaving the
    /// gradient sum in `model.gradients`: one micro-batch straight into it, several summed as a
    /// pairwise tree (GradientTree). Returns the micro-batches' losses, read back once at the end:
    /// they stay on the device until then, so the host never waits for the GPU mid-step. With
    /// `countedTargets` (a masked step's count over all its micro-batches and ranks) each position's
    /// gradient is weighted 1/count instead, and each micro-batch's loss is its sum, not its mean.
    func accumulateGradients(
        microBatches: [(inputs: [Int32], targets: [Int32])], B: Int, T: Int, scale: Float, countedTargets: Int? = nil
    ) throws -> [Float] {
        let N = B * T
        let losses = try stepLosses(count: microBatches.count * N)
        let tree = microBatches.count > 1 ? self.tree : nil
        if let tree { try tree.begin() } else { try model.zeroGradients() }
        for (index, batch) in microBatches.enumerated() {
            try model.forward(
                inputs: batch.inputs, targets: batch.targets, B: B, T: T, lossScaleForBackward: scale,
                lossesInto: losses.slice(index * N, N),
                dlossPerPosition: countedTargets.map { GPT.dlossPerPosition(scale: 1, count: $0) })
            try model.backward()
            try tree?.push()
        }
        try tree?.finish()
        let values = try model.device.download(losses)
        if countedTargets != nil {
            return (0..<microBatches.count).map { Float(GPT.lossSum(values[($0 * N)..<(($0 + 1) * N)])) }
        }
        return (0..<microBatches.count).map { GPT.meanLoss(values[($0 * N)..<(($0 + 1) * N)]) }
    }

    /// A device buffer for the step's per-position losses, `count` floats or more, kept from
    /// step to step (so no step after the first allocates).
    private func stepLosses(count: Int) throws -> Tensor {
        if let buffer = lossBuffer, buffer.count >= count { return buffer.slice(0, count) }
        lossBuffer = nil
        let fresh = try model.device.allocate(floats: count)
        lossBuffer = fresh
        return fresh
    }
}
