import Foundation

/// Faults a test hands to a run, injected where real ones strike. Empty in normal use: the
/// product reads no test switch of its own. (The debug build of `baton` fills one from its
/// `--inject-fault` flag, so tests can inject faults into a separate process.)
public struct FaultPlan {
    /// Called inside every checkpoint save, once the model file is written and before the
    /// optimizer file is: a test pauses there to be killed, or throws the error a full disk gives.
    public var midSave: ((_ step: Int, _ checkpointFolder: URL) throws -> Void)?
    /// Called after the backward pass of every step (1-based), before the gradient norm: a test
    /// puts a NaN into the gradients.
    public var afterBackward: ((_ step: Int, _ model: GPT) throws -> Void)?
    /// Called with each micro-batch's targets before a step (1-based) runs, and the model's
    /// vocabulary size: a test feeds a batch of garbage there (a loss spike).
    public var alterTargets: ((_ step: Int, _ targets: inout [Int32], _ vocabularySize: Int) -> Void)?

    public init(midSave: ((Int, URL) throws -> Void)? = nil, afterBackward: ((Int, GPT) throws -> Void)? = nil) {
        self.midSave = midSave
        self.afterBackward = afterBackward
    }
}
