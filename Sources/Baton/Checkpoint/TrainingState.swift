/// Everything that changes as a run trains, besides the tensors: the one value that is written
/// to and read from state.json, in one place (CheckpointState).
public struct TrainingState: Equatable, Sendable {
    /// Optimizer steps completed.
    public var step: Int = 0
    /// The data loader's position: the epoch, and the index within that epoch's order.
    public var position = LoaderPosition()
    public var tokensSeen: Int = 0
    /// Reserved for stochastic ops (none in GPT-2 training without dropout): restored exactly so
    /// that adding one never breaks resume. The data order needs no state: it is a pure function
    /// of (seed, epoch).
    public var generator: RandomGenerator
    public var lastLoss: Float?
    /// Updates skipped for a non-finite loss or gradient norm (--on-nonfinite skip).
    public var skippedUpdates: Int = 0

    public init(seed: UInt64) { generator = RandomGenerator(seed: RandomGenerator.derive(seed, 0x7261_6E64)) }
}
