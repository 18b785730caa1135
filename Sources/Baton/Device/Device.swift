import CBatonABI
import CBatonCPU

/// Which backend runs the ops.
public enum DeviceKind: String, Codable, CaseIterable, Sendable {
    case cpu, cuda
}

/// One opened compute device: a backend's function table (baton_backend.h) and the context it
/// opened. The CPU's table is linked in (Sources/CBatonCPU), the CUDA one is loaded at run time
/// (CUDABackendLoader); this one type drives either. The model, the optimizer and the trainer are
/// written against it. This file: the device's life (open, close), memory (allocate, upload,
/// download), precision, capabilities and hardware; its ops are in DeviceOps.swift, each mirroring
/// one function type in baton_backend.h; after each op the backend is asked for a recorded
/// failure, which becomes an error naming the op.
public final class Device {
    public let kind: DeviceKind
    let table: UnsafePointer<baton_backend_table>
    /// The table's function pointers, read once (the table does not change).
    let ops: baton_backend_table
    let context: OpaquePointer
    /// Device pointers are host pointers (the CPU): checkpoint writes read tensors in place.
    let hostMemory: Bool
    let scalar: UnsafeMutableRawPointer  // one float on the device, for global_norm_squared's result

    /// Buffers allocated so far. Everything a run needs is allocated before its first step (no
    /// allocation in the step loop); the selftest and the tests hold the trainer to that.
    public private(set) var allocationCount = 0
    /// Bytes of those buffers, all together.
    public private(set) var allocatedBytes = 0

    /// The CPU backend on `threads` threads (0: one per core). Bit-identical whatever the count.
    public static func cpu(threads: Int = 0) -> Device {
        // Opening the CPU fails only when threads cannot be started or memory is out: fatal then.
        do {
            return try Device(
                kind: .cpu, table: baton_cpu_get_table(),
                options: baton_context_options(device_index: 0, threads: Int32(threads), attention: 0))
        } catch { fatalError("cannot open the CPU backend: \(error)") }
    }

    /// The CUDA backend library (see CUDABackendLoader) on GPU `deviceIndex`, running `attention`'s
    /// kernels.
    public static func cuda(deviceIndex: Int = 0, attention: AttentionKernel = .flash) throws -> Device {
        try gpu(table: try CUDABackendLoader.loadTable(), deviceIndex: deviceIndex, attention: attention)
    }

    /// Opens a GPU through a loaded table; a context that will not open is a BackendUnavailable
    /// case chosen by the backend's status code (no driver, no device, anything else).
    static func gpu(
        table: UnsafePointer<baton_backend_table>, deviceIndex: Int, attention: AttentionKernel = .flash
    ) throws -> Device {
        do {
            let options = baton_context_options(
                device_index: Int32(deviceIndex), threads: 0, attention: attention.cValue)
            return try Device(kind: .cuda, table: table, options: options)
        } catch BatonError.deviceFailure(_, let status, let detail) {
            switch status {
            case .noDriver: throw BatonError.backendUnavailable(.noDriver(detail: detail))
            case .noDevice: throw BatonError.backendUnavailable(.noDevice(detail: detail))
            default: throw BatonError.backendUnavailable(.cannotOpen(detail: detail))
            }
        }
    }

    /// Opens a device through any table: the two above, or a test's table with an op replaced.
    init(kind: DeviceKind, table: UnsafePointer<baton_backend_table>, options: baton_context_options) throws {
        self.kind = kind
        self.table = table
        ops = table.pointee
        hostMemory = table.pointee.host_memory != 0
        var message = [CChar](repeating: 0, count: 512)
        var opened: OpaquePointer?
        var options = options
        let status = table.pointee.create_context(&options, &opened, &message, message.count)
        guard status == BATON_OK, let opened else {
            throw BatonError.deviceFailure(
                backend: kind.rawValue, status: DeviceStatus(rawValue: Int32(status.rawValue)) ?? .device,
                detail: String(cString: message))
        }
        context = opened
        var raw: UnsafeMutableRawPointer?
        guard table.pointee.alloc(opened, &raw, 4) == BATON_OK, let raw else {
            table.pointee.destroy_context(opened)
            throw BatonError.deviceFailure(
                backend: kind.rawValue, status: .outOfMemory, detail: "cannot allocate 4 bytes")
        }
        scalar = raw
    }

    deinit {
        _ = table.pointee.release(context, scalar)
        table.pointee.destroy_context(context)
    }

    /// A line for logs: the backend and what it runs on.
    public var summary: String {
        let what = table.pointee.describe(context).map { String(cString: $0) } ?? kind.rawValue
        return "\(kind.rawValue) (\(what))"
    }

    /// The hardware this device computes on, for a checkpoint's state.json.
    public var hardware: HardwareRecord {
        HardwareRecord.current(backend: kind.rawValue, gpu: table.pointee.describe(context).map { String(cString: $0) })
    }

    /// Throws the failure the backend recorded since the last check, if any.
    private func check(_ what: String = "") throws {
        var message: UnsafePointer<CChar>?
        let status = table.pointee.take_error(context, &message)
        guard status != BATON_OK else { return }
        throw BatonError.deviceFailure(
            backend: kind.rawValue, status: DeviceStatus(rawValue: Int32(status.rawValue)) ?? .device,
            detail: message.map { String(cString: $0) } ?? "\(what) failed")
    }

    /// When set, every op waits for the device and is timed (OpProfiler): `baton bench --profile`.
    public var profiler: OpProfiler?

    /// Launches one op and checks it; with a profiler, also waits for it to finish and records
    /// the time from launch to end under the op's name.
    func run(_ op: String, _ launch: () -> Void) throws {
        guard let profiler else {
            launch()
            return try check(op)
        }
        let start = monotonicSeconds()
        launch()
        try check(op)
        try synchronize()
        profiler.record(op, seconds: monotonicSeconds() - start)
    }

    func require(_ status: baton_status, _ what: String) throws {
        if status != BATON_OK { try check(what) }
    }

    // MARK: memory

    func release(_ pointer: UnsafeMutableRawPointer) { _ = table.pointee.release(context, pointer) }

    private func allocate(bytes: Int) throws -> DeviceBuffer {
        allocationCount += 1
        allocatedBytes += bytes
        var raw: UnsafeMutableRawPointer?
        guard table.pointee.alloc(context, &raw, max(bytes, 1)) == BATON_OK, let pointer = raw else {
            var message: UnsafePointer<CChar>?
            _ = table.pointee.take_error(context, &message)
            throw BatonError.deviceFailure(
                backend: kind.rawValue, status: .outOfMemory,
                detail:
                    "out of \(kind == .cpu ? "" : "GPU ")memory allocating \(bytes) bytes "
                    + "(\(message.map { String(cString: $0) } ?? "alloc failed"))"
            )
        }
        return DeviceBuffer(device: self, pointer: pointer, byteCount: bytes)
    }

    /// New tensors read as zeros.
    public func allocate(floats count: Int) throws -> Tensor {
        Tensor(buffer: try allocate(bytes: count * 4), count: count)
    }

    /// How activations are stored in the current precision: bf16 in bf16, float32 otherwise
    /// (baton_activation in baton_backend.h).
    public var activationElement: ElementType { precision == .bf16 ? .bfloat16 : .float32 }

    /// A tensor of `count` activations, stored as `activationElement`; reads as zeros.
    public func allocate(activations count: Int) throws -> Tensor {
        let element = activationElement
        return Tensor(buffer: try allocate(bytes: count * element.byteCount), count: count, element: element)
    }

    public func allocate(tokens count: Int) throws -> TokenTensor {
        TokenTensor(buffer: try allocate(bytes: count * 4), count: count)
    }

    /// Into a bf16 tensor the values go rounded to nearest even.
    public func upload(_ values: UnsafeBufferPointer<Float>, to tensor: Tensor) throws {
        precondition(values.count <= tensor.count)
        if tensor.element == .bfloat16 {
            let halves = values.map { baton_bf16_from_float_bits($0.bitPattern) }
            try halves.withUnsafeBytes {
                try require(table.pointee.copy_to_device(context, tensor.raw, $0.baseAddress, $0.count), "upload")
            }
            return
        }
        try require(
            table.pointee.copy_to_device(context, tensor.pointer, values.baseAddress, values.count * 4), "upload")
    }

    /// A bf16 tensor's values come back as float32 (exactly).
    public func download(_ tensor: Tensor, into values: UnsafeMutableBufferPointer<Float>) throws {
        precondition(values.count <= tensor.count)
        if tensor.element == .bfloat16 {
            var halves = [UInt16](repeating: 0, count: values.count)
            try halves.withUnsafeMutableBytes {
                try require(table.pointee.copy_to_host(context, $0.baseAddress, tensor.raw, $0.count), "download")
            }
            for (i, half) in halves.enumerated() { values[i] = Float(bitPattern: baton_float_bits_from_bf16(half)) }
            return
        }
        try require(
            table.pointee.copy_to_host(context, values.baseAddress, tensor.pointer, values.count * 4), "download")
    }

    public func upload(tokens: UnsafeBufferPointer<Int32>, to tensor: TokenTensor) throws {
        precondition(tokens.count <= tensor.count)
        try require(
            table.pointee.copy_to_device(context, tensor.pointer, tokens.baseAddress, tokens.count * 4), "upload")
    }

    public func copy(_ source: Tensor, to destination: Tensor) throws {
        precondition(source.count == destination.count && source.element == destination.element)
        try require(table.pointee.copy_on_device(context, destination.raw, source.raw, source.byteCount), "copy")
    }

    public func synchronize() throws { try require(table.pointee.synchronize(context), "synchronize") }

    /// Runs `body` on the tensor's values in host memory: the buffer itself on the CPU, a copy
    /// on a GPU. For checkpoint writes, which must not cost a second copy on the CPU.
    public func withHostMemory<R>(of tensor: Tensor, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        if hostMemory { return try body(UnsafeBufferPointer(start: tensor.pointer, count: tensor.count)) }
        let host = try download(tensor)
        return try host.withUnsafeBufferPointer(body)
    }

    /// Sorted, disjoint element ranges in device memory: where AdamW's weight decay applies.
    public struct Ranges {
        let buffer: DeviceBuffer
        public let count: Int
    }

    public func upload(ranges: [Range<Int>]) throws -> Ranges {
        let bounds = ranges.flatMap { [Int64($0.lowerBound), Int64($0.upperBound)] }
        let buffer = try allocate(bytes: max(bounds.count, 1) * 8)
        try bounds.withUnsafeBytes {
            try require(table.pointee.copy_to_device(context, buffer.pointer, $0.baseAddress, $0.count), "upload")
        }
        return Ranges(buffer: buffer, count: ranges.count)
    }

    // MARK: precision and capabilities

    /// The matmuls' precision from now on (fp32 until set).
    public private(set) var precision: Precision = .fp32

    public func setPrecision(_ precision: Precision) throws {
        try require(table.pointee.set_precision(context, precision.cValue), "set_precision")
        self.precision = precision
    }

    /// What the device can do (the table's capabilities: BATON_CAPABILITY_* bits).
    private var capabilities: UInt32 { table.pointee.capabilities(context) }

    /// Whether this device runs `precision` (a GPU below sm_80 has no bf16).
    public func supports(_ precision: Precision) -> Bool { capabilities & (1 << UInt32(precision.cValue)) != 0 }

    /// Whether this device has flash attention (a GPU does, for heads of up to 64 channels; the
    /// CPU always keeps the scores).
    public var hasFlashAttention: Bool { capabilities & BATON_CAPABILITY_FLASH_ATTENTION != 0 }

    /// Floats of `saved` (kept from the forward pass for the backward) and of `scratch` the
    /// attention ops need on this device: the CPU keeps the probabilities (B·NH·T²); a GPU with
    /// flash attention only each row's log-sum-exp (B·NH·T). KV: the key/value heads.
    public func attentionSizes(B: Int, T: Int, C: Int, NH: Int, KV: Int) -> (saved: Int, scratch: Int) {
        var saved: Int64 = 0, scratch: Int64 = 0
        table.pointee.attention_sizes(context, Int32(B), Int32(T), Int32(C), Int32(NH), Int32(KV), &saved, &scratch)
        return (Int(saved), Int(scratch))
    }
}

extension Device {
    public func upload(_ values: [Float], to tensor: Tensor) throws {
        precondition(values.count == tensor.count, "upload size mismatch")
        try values.withUnsafeBufferPointer { try upload($0, to: tensor) }
    }

    public func upload(tokens: [Int32], to tensor: TokenTensor) throws {
        precondition(tokens.count <= tensor.count, "upload size mismatch")
        try tokens.withUnsafeBufferPointer { try upload(tokens: $0, to: tensor) }
    }

    public func download(_ tensor: Tensor) throws -> [Float] {
        var values = [Float](repeating: 0, count: tensor.count)
        try values.withUnsafeMutableBufferPointer { try download(tensor, into: $0) }
        return values
    }
}
