import Foundation

/// Linear warmup then cosine decay to a floor, as a pure function of the step (0-based index of
/// the update), so a resumed run needs nothing but the step to continue the schedule.
///   step < warmup:            lr * (step + 1) / warmup
///   warmup <= step < total:   minLR + (lr - minLR) * 0.5 * (1 + cos(pi * (step - warmup) / (total - warmup)))
///   step >= total:            minLR
public struct LearningRateSchedule: Sendable {
    public let maximum: Float
    public let minimum: Float
    public let warmupSteps: Int
    public let totalSteps: Int

    public init(maximum: Float, minimum: Float, warmupSteps: Int, totalSteps: Int) {
        self.maximum = maximum
        self.minimum = minimum
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    public func learningRate(atStep step: Int) -> Float {
        if step < warmupSteps { return maximum * Float(step + 1) / Float(warmupSteps) }
        if step >= totalSteps || totalSteps <= warmupSteps { return minimum }
        let progress = Double(step - warmupSteps) / Double(totalSteps - warmupSteps)
        let coefficient = 0.5 * (1.0 + cos(Double.pi * progress))
        return minimum + Float(coefficient) * (maximum - minimum)
    }
}
