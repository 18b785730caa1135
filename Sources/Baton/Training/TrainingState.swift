/// Everything that changes as a run trains, besides the tensors: the one owner of the resumable
/// state. The trainer advances it after each step; a checkpoint's state.json is written from it
/// and read back into it (CheckpointState), and nothing else keeps a copy.
public struct TrainingState: Equatable, Sendable {
    /// Optimizer steps completed.
    public var step = 0
    /// Where the next batch starts: the epoch, and the index within that epoch's order. The data
    /// order itself needs no state: it is a pure function of (config.seed, epoch).
    public var position = LoaderPosition()
    public var tokensSeen = 0
    public var lastLoss: Float?
    /// Updates skipped for a non-finite loss or gradient norm (--on-nonfinite skip).
    public var skippedUpdates = 0
    /// The last 128 steps' losses and gradient norms, for the spike guards (--skip-loss-z,
    /// --skip-grad-z): kept whether or not a guard is on, so one turned on at a resume has them.
    public var lossWindow = SpikeWindow()
    public var gradientNormWindow = SpikeWindow()

    public init() {}

    /// AdamW's 1-based update number for the next step: bias correction counts the updates
    /// actually applied.
    public var nextUpdateNumber: Int { step + 1 - skippedUpdates }
}
