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

/// How a tensor's elements are stored: float32, or bfloat16 (a float32's top 16 bits, rounded to
/// nearest even: the activations of a bf16 run, baton_activation in baton_backend.h).
public enum ElementType: Sendable {
    case float32, bfloat16

    public var byteCount: Int { self == .float32 ? 4 : 2 }
}

/// A contiguous run of elements inside a device buffer (float32 unless made as bf16 activations).
/// Views share the buffer, so the flat parameter buffer can be handed out one parameter at a time.
public struct Tensor {
    public let buffer: DeviceBuffer
    /// Offset into the buffer, in elements.
    public let offset: Int
    public let count: Int
    public let element: ElementType

    public init(buffer: DeviceBuffer, offset: Int = 0, count: Int, element: ElementType = .float32) {
        precondition(
            offset >= 0 && (offset + count) * element.byteCount <= buffer.byteCount, "tensor view out of range")
        self.buffer = buffer
        self.offset = offset
        self.count = count
        self.element = element
    }

    /// The float32 elements (a bf16 tensor has none: a programming error).
    public var pointer: UnsafeMutablePointer<Float> {
        precondition(element == .float32, "a float32 view of a bf16 tensor")
        return buffer.pointer.assumingMemoryBound(to: Float.self) + offset
    }

    /// The first element, whatever its type: for the backend's baton_activation pointers.
    public var raw: UnsafeMutableRawPointer { buffer.pointer + offset * element.byteCount }

    public var byteCount: Int { count * element.byteCount }

    /// The elements [start, start + count) of this tensor.
    public func slice(_ start: Int, _ count: Int) -> Tensor {
        precondition(start >= 0 && start + count <= self.count, "slice out of range")
        return Tensor(buffer: buffer, offset: offset + start, count: count, element: element)
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
