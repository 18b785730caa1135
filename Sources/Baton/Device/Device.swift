import CBatonABI
import CBatonCPU

/// Which backend runs the ops.
public enum DeviceKind: String, Codable, CaseIterable, Sendable {
    case cpu, cuda
}

/// One opened compute device: a backend's function table (baton_backend.h) and the context it
/// opened. The CPU's table is linked in (Sources/CBatonCPU), the CUDA one is loaded at run time
/// (CUDABackendLoader); this one type drives either. The model, the optimizer and the trainer are
/// written against it. Each op mirrors one function type in baton_backend.h (see there for
/// shapes); after each op the backend is asked for a recorded failure, which becomes an error
/// naming the op. Letters in labels are the kernels' own: B batch, T sequence length,
/// C channels, NH heads, N rows (B*T), V vocabulary, OC output channels.
public final class Device {
    public let kind: DeviceKind
    let table: UnsafePointer<baton_backend_table>
    /// The table's function pointers, read once (the table does not change).
    private let ops: baton_backend_table
    let context: OpaquePointer
    /// Device pointers are host pointers (the CPU): checkpoint writes read tensors in place.
    let hostMemory: Bool
    private let scalar: UnsafeMutableRawPointer  // one float on the device, for global_norm_squared's result

    /// Buffers allocated so far. Everything a run needs is allocated before its first step (no
    /// allocation in the step loop); the selftest and the tests hold the trainer to that.
    public private(set) var allocationCount = 0
    /// Bytes of those buffers, all together.
    public private(set) var allocatedBytes = 0

    /// The CPU backend on `threads` threads (0: one per core). Bit-identical whatever the count.
    public static func cpu(threads: Int = 0) -> Device {
        // Opening the CPU fails only when threads cannot be started or memory is out: fatal then.
        do { return try Device(kind: .cpu, table: baton_cpu_get_table(), options: baton_context_options(device_index: 0, threads: Int32(threads))) }
        catch { fatalError("cannot open the CPU backend: \(error)") }
    }

    /// The CUDA backend library (see CUDABackendLoader) on GPU `deviceIndex`.
    public static func cuda(deviceIndex: Int = 0) throws -> Device {
        try gpu(table: try CUDABackendLoader.loadTable(), deviceIndex: deviceIndex)
    }

    /// Opens a GPU through a loaded table; a context that will not open is a BackendUnavailable
    /// case chosen by the backend's status code (no driver, no device, anything else).
    static func gpu(table: UnsafePointer<baton_backend_table>, deviceIndex: Int) throws -> Device {
        do {
            return try Device(kind: .cuda, table: table, options: baton_context_options(device_index: Int32(deviceIndex), threads: 0))
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
            throw BatonError.deviceFailure(backend: kind.rawValue, status: DeviceStatus(rawValue: Int32(status.rawValue)) ?? .device,
                                           detail: String(cString: message))
        }
        context = opened
        var raw: UnsafeMutableRawPointer?
        guard table.pointee.alloc(opened, &raw, 4) == BATON_OK, let raw else {
            table.pointee.destroy_context(opened)
            throw BatonError.deviceFailure(backend: kind.rawValue, status: .outOfMemory, detail: "cannot allocate 4 bytes")
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
        throw BatonError.deviceFailure(backend: kind.rawValue, status: DeviceStatus(rawValue: Int32(status.rawValue)) ?? .device,
                                       detail: message.map { String(cString: $0) } ?? "\(what) failed")
    }

    /// When set, every op waits for the device and is timed (OpProfiler): `baton bench --profile`.
    public var profiler: OpProfiler?

    /// Launches one op and checks it; with a profiler, also waits for it to finish and records
    /// the time from launch to end under the op's name.
    private func run(_ op: String, _ launch: () -> Void) throws {
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

    private func require(_ status: baton_status, _ what: String) throws {
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
            throw BatonError.deviceFailure(backend: kind.rawValue, status: .outOfMemory,
                                           detail: "out of \(kind == .cpu ? "" : "GPU ")memory allocating \(bytes) bytes (\(message.map { String(cString: $0) } ?? "alloc failed"))")
        }
        return DeviceBuffer(device: self, pointer: pointer, byteCount: bytes)
    }

    /// New tensors read as zeros.
    public func allocate(floats count: Int) throws -> Tensor { Tensor(buffer: try allocate(bytes: count * 4), count: count) }

    /// How activations are stored in the current precision: bf16 in bf16, float32 otherwise
    /// (baton_activation in baton_backend.h).
    public var activationElement: ElementType { precision == .bf16 ? .bfloat16 : .float32 }

    /// A tensor of `count` activations, stored as `activationElement`; reads as zeros.
    public func allocate(activations count: Int) throws -> Tensor {
        let element = activationElement
        return Tensor(buffer: try allocate(bytes: count * element.byteCount), count: count, element: element)
    }

    public func allocate(tokens count: Int) throws -> TokenTensor { TokenTensor(buffer: try allocate(bytes: count * 4), count: count) }

    /// Into a bf16 tensor the values go rounded to nearest even.
    public func upload(_ values: UnsafeBufferPointer<Float>, to tensor: Tensor) throws {
        precondition(values.count <= tensor.count)
        if tensor.element == .bfloat16 {
            let halves = values.map { baton_bf16_from_float_bits($0.bitPattern) }
            try halves.withUnsafeBytes { try require(table.pointee.copy_to_device(context, tensor.raw, $0.baseAddress, $0.count), "upload") }
            return
        }
        try require(table.pointee.copy_to_device(context, tensor.pointer, values.baseAddress, values.count * 4), "upload")
    }

    /// A bf16 tensor's values come back as float32 (exactly).
    public func download(_ tensor: Tensor, into values: UnsafeMutableBufferPointer<Float>) throws {
        precondition(values.count <= tensor.count)
        if tensor.element == .bfloat16 {
            var halves = [UInt16](repeating: 0, count: values.count)
            try halves.withUnsafeMutableBytes { try require(table.pointee.copy_to_host(context, $0.baseAddress, tensor.raw, $0.count), "download") }
            for (i, half) in halves.enumerated() { values[i] = Float(bitPattern: baton_float_bits_from_bf16(half)) }
            return
        }
        try require(table.pointee.copy_to_host(context, values.baseAddress, tensor.pointer, values.count * 4), "download")
    }

    public func upload(tokens: UnsafeBufferPointer<Int32>, to tensor: TokenTensor) throws {
        precondition(tokens.count <= tensor.count)
        try require(table.pointee.copy_to_device(context, tensor.pointer, tokens.baseAddress, tokens.count * 4), "upload")
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

    // MARK: ops (one per BATON_FOR_EACH_OP entry)

    /// An activation operand (baton_activation): it must be stored as this precision stores them.
    private func act(_ tensor: Tensor) -> UnsafeMutableRawPointer {
        precondition(tensor.element == activationElement, "an activation stored as \(tensor.element) in a \(precision) context")
        return tensor.raw
    }

    /// out = input as activations (rounded to bf16 in bf16, copied otherwise).
    public func toActivation(out: Tensor, input: Tensor) throws {
        precondition(out.count >= input.count, "to_activation output too small")
        try run("to_activation") { ops.to_activation(context, act(out), input.pointer, Int64(input.count)) }
    }


    public func fill(_ x: Tensor, with value: Float) throws {
        try run("fill") { ops.fill(context, x.pointer, value, Int64(x.count)) }
    }

    public func encoderForward(out: Tensor, tokens: TokenTensor, wte: Tensor, wpe: Tensor, B: Int, T: Int, C: Int) throws {
        try run("encoder_forward") { ops.encoder_forward(context, out.pointer, tokens.pointer, wte.pointer, wpe.pointer, Int32(B), Int32(T), Int32(C)) }
    }

    /// `buckets`: the same tokens' rows grouped by token (EmbeddingBuckets, uploaded).
    public func encoderBackward(dwte: Tensor, dwpe: Tensor, dout: Tensor, tokens: TokenTensor, buckets: DeviceBuckets, B: Int, T: Int,
                                C: Int) throws {
        try run("encoder_backward") { ops.encoder_backward(context, dwte.pointer, dwpe.pointer, dout.pointer, tokens.pointer, buckets.rows.pointer, buckets.starts.pointer,
                             Int32(buckets.count), Int32(B), Int32(T), Int32(C)) }
    }

    public func layernormForward(out: Tensor, mean: Tensor, rstd: Tensor, input: Tensor, weight: Tensor, bias: Tensor, N: Int, C: Int) throws {
        try run("layernorm_forward") { ops.layernorm_forward(context, act(out), mean.pointer, rstd.pointer, input.pointer, weight.pointer, bias.pointer, Int32(N), Int32(C)) }
    }

    /// residual = a + b, then out = LayerNorm(residual) with its mean and rstd, in one op.
    public func residualLayernormForward(residual: Tensor, out: Tensor, mean: Tensor, rstd: Tensor, a: Tensor, b: Tensor, weight: Tensor,
                                         bias: Tensor, N: Int, C: Int) throws {
        precondition(residual.count >= N * C && out.count >= N * C && a.count >= N * C && b.count >= N * C, "residual_layernorm operand too small")
        try run("residual_layernorm_forward") { ops.residual_layernorm_forward(context, residual.pointer, act(out), mean.pointer, rstd.pointer, a.pointer, act(b), weight.pointer,
                                       bias.pointer, Int32(N), Int32(C)) }
    }

    /// dinputActivation, when given, also receives dinput (after the addition) as activations.
    public func layernormBackward(dinput: Tensor, dinputActivation: Tensor? = nil, dweight: Tensor, dbias: Tensor, dout: Tensor, input: Tensor,
                                  weight: Tensor, mean: Tensor, rstd: Tensor, N: Int, C: Int) throws {
        try run("layernorm_backward") { ops.layernorm_backward(context, dinput.pointer, dinputActivation.map(act), dweight.pointer, dbias.pointer, act(dout), input.pointer, weight.pointer,
                               mean.pointer, rstd.pointer, Int32(N), Int32(C)) }
    }

    /// c[M,N] = op(a)[M,K] @ op(b)[K,N] + beta * c; a and b are activations, and so is c when
    /// beta is 0 (else c is float32: a weight's gradient).
    public func matmul(c: Tensor, a: Tensor, b: Tensor, M: Int, N: Int, K: Int, transposeA: Bool, transposeB: Bool, beta: Float) throws {
        precondition(c.count >= M * N && a.count >= M * K && b.count >= K * N, "matmul operand too small")
        let output = beta == 0 ? act(c) : UnsafeMutableRawPointer(c.pointer)
        try run("matmul") { ops.matmul(context, output, act(a), act(b), Int32(M), Int32(N), Int32(K), transposeA ? 1 : 0, transposeB ? 1 : 0, beta) }
    }

    /// out[N, outFeatures] = input @ weight + bias; with geluOut, also geluOut = GELU(out) (out keeps
    /// the pre-activation). One op, rounded once at the end in bf16.
    public func linearForward(out: Tensor, geluOut: Tensor? = nil, input: Tensor, weight: Tensor, bias: Tensor, N: Int, inFeatures: Int,
                              outFeatures: Int) throws {
        precondition(out.count >= N * outFeatures && (geluOut?.count ?? Int.max) >= N * outFeatures && input.count >= N * inFeatures
                     && weight.count >= inFeatures * outFeatures && bias.count >= outFeatures, "linear_forward operand too small")
        try run("linear_forward") { ops.linear_forward(context, act(out), geluOut.map(act), act(input), act(weight), act(bias), Int32(N), Int32(inFeatures),
                           Int32(outFeatures)) }
    }

    /// dinput[N, inFeatures] = GELU'(preGelu) * (dout[N, outFeatures] @ weight^T): the gradient through a
    /// linear layer and the GELU before it, rounded once at the end in bf16.
    public func matmulGeluBackward(dinput: Tensor, dout: Tensor, weight: Tensor, preGelu: Tensor, N: Int, inFeatures: Int, outFeatures: Int) throws {
        precondition(dinput.count >= N * inFeatures && preGelu.count >= N * inFeatures && dout.count >= N * outFeatures
                     && weight.count >= inFeatures * outFeatures, "matmul_gelu_backward operand too small")
        try run("matmul_gelu_backward") { ops.matmul_gelu_backward(context, act(dinput), act(dout), act(weight), act(preGelu), Int32(N), Int32(inFeatures),
                                 Int32(outFeatures)) }
    }

    public func biasForward(out: Tensor, bias: Tensor, N: Int, OC: Int) throws {
        try run("bias_forward") { ops.bias_forward(context, out.pointer, bias.pointer, Int32(N), Int32(OC)) }
    }

    public func biasBackward(dbias: Tensor, dout: Tensor, N: Int, OC: Int) throws {
        try run("bias_backward") { ops.bias_backward(context, dbias.pointer, act(dout), Int32(N), Int32(OC)) }
    }

    /// Floats of `saved` (kept from the forward pass for the backward) and of `scratch` the
    /// attention ops need on this device: the CPU keeps the probabilities (B·NH·T²); a GPU with
    /// flash attention only each row's log-sum-exp (B·NH·T).
    /// The matmuls' precision from now on (fp32 until set).
    public private(set) var precision: Precision = .fp32

    public func setPrecision(_ precision: Precision) throws {
        try require(table.pointee.set_precision(context, precision.cValue), "set_precision")
        self.precision = precision
    }

    /// Whether this device runs `precision` (a GPU below sm_80 refuses bf16); the precision
    /// stays what it was.
    public func supports(_ precision: Precision) -> Bool {
        let current = self.precision
        defer { try? setPrecision(current) }
        return (try? setPrecision(precision)) != nil
    }

    public func attentionSizes(B: Int, T: Int, C: Int, NH: Int) -> (saved: Int, scratch: Int) {
        var saved: Int64 = 0, scratch: Int64 = 0
        table.pointee.attention_sizes(Int32(B), Int32(T), Int32(C), Int32(NH), &saved, &scratch)
        return (Int(saved), Int(scratch))
    }

    public func attentionForward(out: Tensor, saved: Tensor, qkv: Tensor, scratch: Tensor, B: Int, T: Int, C: Int, NH: Int) throws {
        try run("attention_forward") { ops.attention_forward(context, act(out), saved.pointer, act(qkv), scratch.pointer, Int32(B), Int32(T), Int32(C), Int32(NH)) }
    }

    /// `out` and `saved` are what attentionForward left.
    public func attentionBackward(dqkv: Tensor, scratch: Tensor, dout: Tensor, qkv: Tensor, out: Tensor, saved: Tensor, B: Int, T: Int, C: Int,
                                  NH: Int) throws {
        try run("attention_backward") { ops.attention_backward(context, act(dqkv), scratch.pointer, act(dout), act(qkv), act(out), saved.pointer, Int32(B), Int32(T),
                               Int32(C), Int32(NH)) }
    }

    public func geluForward(out: Tensor, input: Tensor) throws {
        try run("gelu_forward") { ops.gelu_forward(context, out.pointer, input.pointer, Int64(input.count)) }
    }

    public func geluBackward(dinput: Tensor, input: Tensor, dout: Tensor) throws {
        try run("gelu_backward") { ops.gelu_backward(context, dinput.pointer, input.pointer, dout.pointer, Int64(input.count)) }
    }

    public func residualForward(out: Tensor, a: Tensor, b: Tensor) throws {
        try run("residual_forward") { ops.residual_forward(context, out.pointer, a.pointer, b.pointer, Int64(a.count)) }
    }

    /// losses[n] = cross-entropy of row n over its first V of paddedV columns (nil: V); when
    /// dlogits is given it receives (softmax - onehot) * dloss, and 0 in the padded columns.
    public func softmaxCrossEntropy(losses: Tensor, dlogits: Tensor?, logits: Tensor, targets: TokenTensor, N: Int, V: Int, paddedV: Int? = nil,
                                    dloss: Float) throws {
        try run("softmax_crossentropy") { ops.softmax_crossentropy(context, losses.pointer, dlogits.map(act), act(logits), targets.pointer, Int32(N), Int32(V),
                                 Int32(paddedV ?? V), dloss) }
    }

    /// Sorted, disjoint element ranges in device memory: where AdamW's weight decay applies.
    public struct Ranges {
        let buffer: DeviceBuffer
        public let count: Int
    }

    public func upload(ranges: [Range<Int>]) throws -> Ranges {
        let bounds = ranges.flatMap { [Int64($0.lowerBound), Int64($0.upperBound)] }
        let buffer = try allocate(bytes: max(bounds.count, 1) * 8)
        try bounds.withUnsafeBytes { try require(table.pointee.copy_to_device(context, buffer.pointer, $0.baseAddress, $0.count), "upload") }
        return Ranges(buffer: buffer, count: ranges.count)
    }

    /// AdamW over `params` in one call; weight decay where `decayRanges` says (nil: everywhere).
    public func adamwUpdate(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, learningRate: Float, beta1: Float, beta2: Float,
                            eps: Float, weightDecay: Float, gradScale: Float, step: Int, decayRanges: Ranges? = nil) throws {
        let ranges = decayRanges.map { UnsafePointer($0.buffer.pointer.assumingMemoryBound(to: Int64.self)) }
        try run("adamw_update") { ops.adamw_update(context, params.pointer, grads.pointer, m.pointer, v.pointer, Int64(params.count), learningRate, beta1, beta2, eps,
                         weightDecay, gradScale, Int64(step), ranges, Int32(decayRanges?.count ?? 0)) }
    }

    /// The sum of squares of x, as a host value (one small transfer).
    public func globalNormSquared(_ x: Tensor) throws -> Float {
        try run("global_norm_squared") { ops.global_norm_squared(context, scalar.assumingMemoryBound(to: Float.self), x.pointer, Int64(x.count)) }
        var result: Float = 0
        try require(table.pointee.copy_to_host(context, &result, scalar, 4), "global_norm_squared")
        return result
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
