import Foundation

/// The learning rate's shape after warmup (`--schedule`), as llm.c's `-k` names them.
public enum ScheduleShape: String, SettingMode {
    /// Cosine decay from the peak to the floor over the steps after warmup (nanoGPT, llm.c's default).
    case cosine
    /// Straight-line decay from the peak to the floor.
    case linear
    /// The peak until the end (the floor unused).
    case constant
    /// Warmup-stable-decay: the peak, then a straight-line decay to the floor over the last
    /// `--decay-fraction` of the steps (MiniCPM's WSD, OLMo's and llm.c's).
    case wsd
}

/// Linear warmup, then the chosen shape, as a pure function of the step (0-based index of the
/// update), so a resumed run needs nothing but the step to continue the schedule. With W warmup
/// steps, S total steps and p = (step - W) / (S - W) after warmup:
///   step < W:       lr * (step + 1) / W                                   (every shape)
///   cosine:         minLR + (lr - minLR) * 0.5 * (1 + cos(pi * p))
///   linear:         minLR + (lr - minLR) * (1 - p)
///   constant:       lr
///   wsd:            lr until step D = S - round(f * S), then minLR + (lr - minLR) * (S - step) / (S - D)
///   step >= S:      minLR (constant: lr)
/// S is the run's `--steps` as the step is taken: a resume that raises it stretches cosine and
/// linear over the new length from the step it resumes at (the rate jumps up to where the longer
/// run would be), moves wsd's decay to the new end, and leaves constant as it was.
public struct LearningRateSchedule: Sendable {
    public let maximum: Float
    public let minimum: Float
    public let warmupSteps: Int
    public let totalSteps: Int
    public let shape: ScheduleShape
    /// wsd: the share of the steps the decay takes.
    public let decayFraction: Float

    public init(
        maximum: Float, minimum: Float, warmupSteps: Int, totalSteps: Int, shape: ScheduleShape = .cosine,
        decayFraction: Float = 0.2
    ) {
        self.maximum = maximum
        self.minimum = minimum
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.shape = shape
        self.decayFraction = decayFraction
    }

    /// wsd's first decaying step.
    var decayStart: Int { max(warmupSteps, totalSteps - Int((Double(decayFraction) * Double(totalSteps)).rounded())) }

    public func learningRate(atStep step: Int) -> Float {
        if step < warmupSteps { return maximum * Float(step + 1) / Float(warmupSteps) }
        if shape == .constant { return maximum }
        if step >= totalSteps || totalSteps <= warmupSteps { return minimum }
        let progress = Double(step - warmupSteps) / Double(totalSteps - warmupSteps)
        switch shape {
        case .cosine:
            let coefficient = 0.5 * (1.0 + cos(Double.pi * progress))
            return minimum + Float(coefficient) * (maximum - minimum)
        case .linear:
            return minimum + Float(1 - progress) * (maximum - minimum)
        case .wsd:
            let start = decayStart
            if step < start { return maximum }
            return minimum + Float(Double(totalSteps - step) / Double(totalSteps - start)) * (maximum - minimum)
        case .constant:
            return maximum
        }
    }
}
