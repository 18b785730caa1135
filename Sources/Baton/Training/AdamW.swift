/// AdamW with decoupled weight decay on 2-D tensors only, moments kept on the device in the
/// parameters' flat layout.
public final class AdamW {
    public let beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    public let firstMoment: Tensor
    public let secondMoment: Tensor
    private let model: GPT

    public init(model: GPT, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float) throws {
        self.model = model
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        firstMoment = try model.device.allocate(floats: model.layout.totalCount)
        secondMoment = try model.device.allocate(floats: model.layout.totalCount)
    }

    /// Applies update number `step` (1-based, for bias correction); gradients are multiplied by
    /// `gradientScale` first (global-norm clipping).
    public func update(step: Int, learningRate: Float, gradientScale: Float) throws {
        for spec in model.layout.specs {
            let slice = { (t: Tensor) in t.slice(spec.offset, spec.count) }
            try model.device.adamwUpdate(params: slice(model.parameters), grads: slice(model.gradients), m: slice(firstMoment),
                                         v: slice(secondMoment), learningRate: learningRate, beta1: beta1, beta2: beta2, eps: epsilon,
                                         weightDecay: spec.decays ? weightDecay : 0, gradScale: gradientScale, step: step)
        }
    }

    /// torch.nn.utils.clip_grad_norm_'s factor: min(1, maxNorm / (norm + 1e-6)); 1 when clipping is off.
    public static func clipScale(norm: Float, maxNorm: Float) -> Float {
        guard maxNorm > 0 else { return 1 }
        return min(1, maxNorm / (norm + 1e-6))
    }
}
