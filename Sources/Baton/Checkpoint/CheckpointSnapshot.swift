/// A host copy of the three buffers a checkpoint holds, for an asynchronous save: the step's
/// weights and moments are copied here (pinned memory on a GPU) and written by a background thread
/// while training goes on. Made once and reused by every save (at most one is in flight).
public final class CheckpointSnapshot: CheckpointSource, @unchecked Sendable {
    let parameters: HostBuffer
    let firstMoment: HostBuffer
    let secondMoment: HostBuffer

    public init(device: Device, count: Int) throws {
        parameters = try device.allocateHost(floats: count)
        firstMoment = try device.allocateHost(floats: count)
        secondMoment = try device.allocateHost(floats: count)
    }

    public var byteCount: Int { 3 * parameters.floats.count * 4 }

    /// Copies the tensors' current values in (waiting for the device's queued work first).
    public func capture(_ tensors: CheckpointTensors) throws {
        try tensors.device.download(tensors.parameters, into: parameters.floats)
        try tensors.device.download(tensors.firstMoment, into: firstMoment.floats)
        try tensors.device.download(tensors.secondMoment, into: secondMoment.floats)
    }

    public func withParameters<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        try body(UnsafeBufferPointer(parameters.floats))
    }

    public func withMoments<R>(_ body: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) throws -> R) throws -> R
    {
        try body(UnsafeBufferPointer(firstMoment.floats), UnsafeBufferPointer(secondMoment.floats))
    }
}
