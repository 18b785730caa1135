import Foundation

/// A checkpoint folder whose files matched their recorded sizes and CRC32Cs, with its state.
public struct VerifiedCheckpoint {
    public let url: URL
    public let state: CheckpointState

    /// Verifies the checkpoint at `url` (CheckpointStore.verify).
    public init(verifying url: URL) throws {
        self.url = url
        state = try CheckpointStore.verify(url)
    }
}
