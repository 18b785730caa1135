/// AdamW with decoupled weight decay on 2-D tensors only, moments kept on the device in the
/// parameters' flat layout.
public final class AdamW {
    public let beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    public let firstMoment: Tensor
    public let secondMoment: Tensor
    private let model: GPT
    /// ParameterLayout.decayRanges on the device.
    private let decayRanges: Device.Ranges

    public init(model: GPT, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float) throws {
        self.model = model
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        firstMoment = try model.device.allocate(floats: model.layout.totalCount)
        secondMoment = try model.device.allocate(floats: model.layout.totalCount)
        decayRanges = try model.device.upload(ranges: model.layout.decayRanges)
    }

    /// Applies update number `step` (1-based, for bias correction); gradients are multiplied by
    /// `gradientScale` first (global-norm clipping).
    public func update(step: Int, learningRate: Float, gradientScale: Float) throws {
        try model.device.adamwUpdate(
            params: model.parameters, grads: model.gradients, m: firstMoment, v: secondMoment,
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
