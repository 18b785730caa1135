/// AdamW with decoupled weight decay on 2-D tensors only, moments kept on the device in the
/// parameters' flat layout: for all of it, or with ZeRO-1 (`--zero 1`) for this rank's slice
/// of it alone (OptimizerSlices), which is all this rank's update touches.
public final class AdamW {
    public let beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    /// The elements of the flat parameter buffer the moments cover and each update changes.
    public let slice: Range<Int>
    public let firstMoment: Tensor
    public let secondMoment: Tensor
    private let model: GPT
    /// ParameterLayout.decayRanges within `slice`, on the device.
    private let decayRanges: Device.Ranges

    public init(
        model: GPT, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float, slice: Range<Int>? = nil
    ) throws {
        self.model = model
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        let slice = slice ?? 0..<model.layout.totalCount
        self.slice = slice
        // A rank past the buffer's end (more ranks than floats) holds an empty slice.
        firstMoment = try model.device.allocate(floats: max(slice.count, 1)).slice(0, slice.count)
        secondMoment = try model.device.allocate(floats: max(slice.count, 1)).slice(0, slice.count)
        decayRanges = try model.device.upload(
            ranges: OptimizerSlices.ranges(model.layout.decayRanges, within: slice))
    }

    /// True when the moments cover only part of the parameters (ZeRO-1 with several ranks).
    public var isSliced: Bool { slice.count != model.layout.totalCount }

    /// The optimizer state this rank holds, in bytes (both moments).
    public var stateBytes: Int { 2 * slice.count * 4 }

    /// Applies update number `step` (1-based, for bias correction) to the parameters of `slice`;
    /// gradients are multiplied by `gradientScale` first (global-norm clipping).
    public func update(step: Int, learningRate: Float, gradientScale: Float) throws {
        guard !slice.isEmpty else { return }
        try model.device.adamwUpdate(
            params: model.parameters.slice(slice.lowerBound, slice.count),
            grads: model.gradients.slice(slice.lowerBound, slice.count), m: firstMoment, v: secondMoment,
            learningRate: learningRate,
            beta1: beta1, beta2: beta2, eps: epsilon, weightDecay: weightDecay, gradScale: gradientScale, step: step,
            decayRanges: decayRanges)
    }

    /// torch.nn.utils.clip_grad_norm_'s factor: min(1, maxNorm / (norm + 1e-6)); 1 when clipping is off.
    public static func clipScale(norm: Float, maxNorm: Float) -> Float {
        guard maxNorm > 0 else { return 1 }
        return min(1, maxNorm / (norm + 1e-6))
    }
}
