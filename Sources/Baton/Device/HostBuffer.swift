import CBatonABI

/// Float32 host memory from a device's backend: pinned (page-locked) on a GPU, so copies to and
/// from it run at the bus's speed; plain memory on the CPU. An asynchronous checkpoint copies the
/// training state into such buffers and writes them while training goes on.
public final class HostBuffer {
    public let floats: UnsafeMutableBufferPointer<Float>
    private let device: Device

    init(device: Device, floats: UnsafeMutableBufferPointer<Float>) {
        self.device = device
        self.floats = floats
    }

    deinit { device.releaseHost(UnsafeMutableRawPointer(floats.baseAddress!)) }
}

extension Device {
    /// `count` floats of host memory (reads as zeros).
    public func allocateHost(floats count: Int) throws -> HostBuffer {
        var raw: UnsafeMutableRawPointer?
        guard ops.alloc_host(context, &raw, max(count, 1) * 4) == BATON_OK, let pointer = raw else {
            var message: UnsafePointer<CChar>?
            _ = ops.take_error(context, &message)
            throw BatonError.deviceFailure(
                backend: kind.rawValue, status: .outOfMemory,
                detail:
                    "out of host memory allocating \(count * 4) bytes "
                    + "(\(message.map { String(cString: $0) } ?? "alloc_host failed"))")
        }
        return HostBuffer(
            device: self,
            floats: UnsafeMutableBufferPointer(start: pointer.assumingMemoryBound(to: Float.self), count: count))
    }

    func releaseHost(_ pointer: UnsafeMutableRawPointer) { _ = ops.release_host(context, pointer) }
}
