import CBatonABI

/// The CUDA backend: every op goes through the function table of libbaton_cuda.so (see
/// CUDABackendLoader), on one stream. After each op the library is asked for a recorded
/// failure, which becomes an error naming the op and the CUDA or cuBLAS error string.
public final class CUDADevice: Device {
    public let kind = DeviceKind.cuda
    private let table: baton_backend_table
    private let scalar: Tensor  // one float on the device, for global_norm_squared's result

    public init(deviceIndex: Int = 0) throws {
        table = try CUDABackendLoader.open(deviceIndex: deviceIndex).pointee
        var raw: UnsafeMutableRawPointer?
        guard table.alloc(&raw, 4) == 0, let pointer = raw else { throw CUDADevice.failure(table, "alloc") }
        let release = table.release
        scalar = Tensor(buffer: DeviceBuffer(pointer: pointer, byteCount: 4, release: { _ = release?($0) }), count: 1)
    }

    public var summary: String { "cuda (\(table.describe().map { String(cString: $0) } ?? "GPU"), cuBLAS)" }

    private static func failure(_ table: baton_backend_table, _ what: String) -> BatonError {
        let message = table.take_error().map { String(cString: $0) } ?? "\(what) failed"
        return BatonError("cuda: \(message)")
    }

    /// Throws the failure the library recorded during the last call, if any.
    private func check() throws {
        if let message = table.take_error() { throw BatonError("cuda: \(String(cString: message))") }
    }

    public private(set) var allocationCount = 0

    private func allocate(bytes: Int) throws -> DeviceBuffer {
        allocationCount += 1
        var raw: UnsafeMutableRawPointer?
        guard table.alloc(&raw, max(bytes, 1)) == 0, let pointer = raw else {
            throw BatonError("cuda: out of GPU memory allocating \(bytes) bytes (\(table.take_error().map { String(cString: $0) } ?? "alloc failed"))")
        }
        let release = table.release
        return DeviceBuffer(pointer: pointer, byteCount: bytes, release: { _ = release?($0) })
    }

    public func allocate(floats count: Int) throws -> Tensor {
        let tensor = Tensor(buffer: try allocate(bytes: count * 4), count: count)
        try fill(tensor, with: 0)  // as the CPU backend: new memory reads as zeros
        return tensor
    }

    public func allocate(tokens count: Int) throws -> TokenTensor { TokenTensor(buffer: try allocate(bytes: count * 4), count: count) }

    public func upload(_ values: UnsafeBufferPointer<Float>, to tensor: Tensor) throws {
        precondition(values.count <= tensor.count)
        guard table.copy_to_device(tensor.pointer, values.baseAddress, values.count * 4) == 0 else { throw CUDADevice.failure(table, "upload") }
    }

    public func download(_ tensor: Tensor, into values: UnsafeMutableBufferPointer<Float>) throws {
        precondition(values.count <= tensor.count)
        guard table.copy_to_host(values.baseAddress, tensor.pointer, values.count * 4) == 0 else { throw CUDADevice.failure(table, "download") }
    }

    public func upload(tokens: UnsafeBufferPointer<Int32>, to tensor: TokenTensor) throws {
        precondition(tokens.count <= tensor.count)
        guard table.copy_to_device(tensor.pointer, tokens.baseAddress, tokens.count * 4) == 0 else { throw CUDADevice.failure(table, "upload") }
    }

    public func copy(_ source: Tensor, to destination: Tensor) throws {
        precondition(source.count == destination.count)
        guard table.copy_on_device(destination.pointer, source.pointer, source.count * 4) == 0 else { throw CUDADevice.failure(table, "copy") }
    }

    public func synchronize() throws {
        guard table.synchronize() == 0 else { throw CUDADevice.failure(table, "synchronize") }
    }

    public func withHostMemory<R>(of tensor: Tensor, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        let host = try download(tensor)
        return try host.withUnsafeBufferPointer(body)
    }

    public func fill(_ x: Tensor, with value: Float) throws {
        table.fill(x.pointer, value, Int64(x.count)); try check()
    }

    public func encoderForward(out: Tensor, tokens: TokenTensor, wte: Tensor, wpe: Tensor, B: Int, T: Int, C: Int) throws {
        table.encoder_forward(out.pointer, tokens.pointer, wte.pointer, wpe.pointer, Int32(B), Int32(T), Int32(C)); try check()
    }

    public func encoderBackward(dwte: Tensor, dwpe: Tensor, dout: Tensor, tokens: TokenTensor, B: Int, T: Int, C: Int) throws {
        table.encoder_backward(dwte.pointer, dwpe.pointer, dout.pointer, tokens.pointer, Int32(B), Int32(T), Int32(C)); try check()
    }

    public func layernormForward(out: Tensor, mean: Tensor, rstd: Tensor, input: Tensor, weight: Tensor, bias: Tensor, N: Int, C: Int) throws {
        table.layernorm_forward(out.pointer, mean.pointer, rstd.pointer, input.pointer, weight.pointer, bias.pointer, Int32(N), Int32(C)); try check()
    }

    public func layernormBackward(dinput: Tensor, dweight: Tensor, dbias: Tensor, dout: Tensor, input: Tensor, weight: Tensor,
                                  mean: Tensor, rstd: Tensor, N: Int, C: Int) throws {
        table.layernorm_backward(dinput.pointer, dweight.pointer, dbias.pointer, dout.pointer, input.pointer, weight.pointer,
                                 mean.pointer, rstd.pointer, Int32(N), Int32(C)); try check()
    }

    public func matmul(c: Tensor, a: Tensor, b: Tensor, M: Int, N: Int, K: Int, transposeA: Bool, transposeB: Bool, beta: Float) throws {
        precondition(c.count >= M * N && a.count >= M * K && b.count >= K * N, "matmul operand too small")
        table.matmul(c.pointer, a.pointer, b.pointer, Int32(M), Int32(N), Int32(K), transposeA ? 1 : 0, transposeB ? 1 : 0, beta); try check()
    }

    public func biasForward(out: Tensor, bias: Tensor, N: Int, OC: Int) throws {
        table.bias_forward(out.pointer, bias.pointer, Int32(N), Int32(OC)); try check()
    }

    public func biasBackward(dbias: Tensor, dout: Tensor, N: Int, OC: Int) throws {
        table.bias_backward(dbias.pointer, dout.pointer, Int32(N), Int32(OC)); try check()
    }

    public func attentionForward(out: Tensor, att: Tensor, qkv: Tensor, scratch: Tensor, B: Int, T: Int, C: Int, NH: Int) throws {
        table.attention_forward(out.pointer, att.pointer, qkv.pointer, scratch.pointer, Int32(B), Int32(T), Int32(C), Int32(NH)); try check()
    }

    public func attentionBackward(dqkv: Tensor, scratch: Tensor, dout: Tensor, qkv: Tensor, att: Tensor, B: Int, T: Int, C: Int, NH: Int) throws {
        table.attention_backward(dqkv.pointer, scratch.pointer, dout.pointer, qkv.pointer, att.pointer, Int32(B), Int32(T), Int32(C), Int32(NH))
        try check()
    }

    public func geluForward(out: Tensor, input: Tensor) throws {
        table.gelu_forward(out.pointer, input.pointer, Int64(input.count)); try check()
    }

    public func geluBackward(dinput: Tensor, input: Tensor, dout: Tensor) throws {
        table.gelu_backward(dinput.pointer, input.pointer, dout.pointer, Int64(input.count)); try check()
    }

    public func residualForward(out: Tensor, a: Tensor, b: Tensor) throws {
        table.residual_forward(out.pointer, a.pointer, b.pointer, Int64(a.count)); try check()
    }

    public func softmaxCrossEntropy(losses: Tensor, dlogits: Tensor?, logits: Tensor, targets: TokenTensor, N: Int, V: Int, dloss: Float) throws {
        table.softmax_crossentropy(losses.pointer, dlogits?.pointer, logits.pointer, targets.pointer, Int32(N), Int32(V), dloss); try check()
    }

    public func adamwUpdate(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, learningRate: Float, beta1: Float, beta2: Float,
                            eps: Float, weightDecay: Float, gradScale: Float, step: Int) throws {
        table.adamw_update(params.pointer, grads.pointer, m.pointer, v.pointer, Int64(params.count), learningRate, beta1, beta2, eps,
                           weightDecay, gradScale, Int64(step))
        try check()
    }

    public func globalNormSquared(_ x: Tensor) throws -> Float {
        table.global_norm_squared(scalar.pointer, x.pointer, Int64(x.count)); try check()
        var result: Float = 0
        guard table.copy_to_host(&result, scalar.pointer, 4) == 0 else { throw CUDADevice.failure(table, "global_norm_squared") }
        return result
    }
}
