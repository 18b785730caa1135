/// Memory that a device owns: host memory for the CPU, device memory for a GPU. It keeps its
/// device open until it is released.
public final class DeviceBuffer {
    public let pointer: UnsafeMutableRawPointer
    public let byteCount: Int
    private let device: Device

    init(device: Device, pointer: UnsafeMutableRawPointer, byteCount: Int) {
        self.device = device
        self.pointer = pointer
        self.byteCount = byteCount
    }

    deinit { device.release(pointer) }
}

/// A contiguous run of float32 values inside a device buffer. Views share the buffer, so the
/// flat parameter buffer can be handed out one parameter at a time.
public struct Tensor {
    public let buffer: DeviceBuffer
    /// Offset into the buffer, in elements.
    public let offset: Int
    public let count: Int

    public init(buffer: DeviceBuffer, offset: Int = 0, count: Int) {
        precondition(offset >= 0 && (offset + count) * 4 <= buffer.byteCount, "tensor view out of range")
        self.buffer = buffer
        self.offset = offset
        self.count = count
    }

    public var pointer: UnsafeMutablePointer<Float> {
        buffer.pointer.assumingMemoryBound(to: Float.self) + offset
    }

    /// The elements [start, start + count) of this tensor.
    public func slice(_ start: Int, _ count: Int) -> Tensor {
        precondition(start >= 0 && start + count <= self.count, "slice out of range")
        return Tensor(buffer: buffer, offset: offset + start, count: count)
    }
}

/// A contiguous run of int32 token ids on a device.
public struct TokenTensor {
    public let buffer: DeviceBuffer
    public let count: Int

    public var pointer: UnsafeMutablePointer<Int32> {
        buffer.pointer.assumingMemoryBound(to: Int32.self)
    }
}
