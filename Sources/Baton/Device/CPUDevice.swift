import CBatonCPU
#if canImport(Glibc)
import Glibc
#endif

/// The CPU backend: C kernels in Sources/CBatonCPU and OpenBLAS sgemm, on `threads` threads.
/// Bit-identical run to run for a given thread count.
public final class CPUDevice: Device {
    public let kind = DeviceKind.cpu
    public let threads: Int

    /// threads: 0 means one per core.
    public init(threads: Int = 0) {
        baton_cpu_set_threads(Int32(threads))
        self.threads = Int(baton_cpu_threads())
    }

    public var summary: String { "cpu (\(threads) threads, OpenBLAS sgemm)" }

    public private(set) var allocationCount = 0

    private func allocate(bytes: Int) throws -> DeviceBuffer {
        allocationCount += 1
        // 64-byte alignment for vector loads; at least one byte so empty tensors still have a pointer.
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, max(bytes, 1)) == 0, let pointer = raw else {
            throw BatonError("cpu: out of memory allocating \(bytes) bytes")
        }
        memset(pointer, 0, max(bytes, 1))
        return DeviceBuffer(pointer: pointer, byteCount: bytes, release: { free($0) })
    }

    public func allocate(floats count: Int) throws -> Tensor {
        Tensor(buffer: try allocate(bytes: count * 4), count: count)
    }

    public func allocate(tokens count: Int) throws -> TokenTensor {
        TokenTensor(buffer: try allocate(bytes: count * 4), count: count)
    }

    public func upload(_ values: UnsafeBufferPointer<Float>, to tensor: Tensor) throws {
        precondition(values.count <= tensor.count)
        if let base = values.baseAddress { tensor.pointer.update(from: base, count: values.count) }
    }

    public func download(_ tensor: Tensor, into values: UnsafeMutableBufferPointer<Float>) throws {
        precondition(values.count <= tensor.count)
        if let base = values.baseAddress { base.update(from: tensor.pointer, count: values.count) }
    }

    public func upload(tokens: UnsafeBufferPointer<Int32>, to tensor: TokenTensor) throws {
        precondition(tokens.count <= tensor.count)
        if let base = tokens.baseAddress { tensor.pointer.update(from: base, count: tokens.count) }
    }

    public func copy(_ source: Tensor, to destination: Tensor) throws {
        precondition(source.count == destination.count)
        destination.pointer.update(from: source.pointer, count: source.count)
    }

    public func synchronize() throws {}

    public func withHostMemory<R>(of tensor: Tensor, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        try body(UnsafeBufferPointer(start: tensor.pointer, count: tensor.count))
    }

    public func fill(_ x: Tensor, with value: Float) throws {
        CBatonCPU.fill(x.pointer, value, Int64(x.count))
    }

    public func encoderForward(out: Tensor, tokens: TokenTensor, wte: Tensor, wpe: Tensor, B: Int, T: Int, C: Int) throws {
        encoder_forward(out.pointer, tokens.pointer, wte.pointer, wpe.pointer, Int32(B), Int32(T), Int32(C))
    }

    public func encoderBackward(dwte: Tensor, dwpe: Tensor, dout: Tensor, tokens: TokenTensor, B: Int, T: Int, C: Int) throws {
        encoder_backward(dwte.pointer, dwpe.pointer, dout.pointer, tokens.pointer, Int32(B), Int32(T), Int32(C))
    }

    public func layernormForward(out: Tensor, mean: Tensor, rstd: Tensor, input: Tensor, weight: Tensor, bias: Tensor, N: Int, C: Int) throws {
        layernorm_forward(out.pointer, mean.pointer, rstd.pointer, input.pointer, weight.pointer, bias.pointer, Int32(N), Int32(C))
    }

    public func layernormBackward(dinput: Tensor, dweight: Tensor, dbias: Tensor, dout: Tensor, input: Tensor, weight: Tensor,
                                  mean: Tensor, rstd: Tensor, N: Int, C: Int) throws {
        layernorm_backward(dinput.pointer, dweight.pointer, dbias.pointer, dout.pointer, input.pointer, weight.pointer,
                           mean.pointer, rstd.pointer, Int32(N), Int32(C))
    }

    public func matmul(c: Tensor, a: Tensor, b: Tensor, M: Int, N: Int, K: Int, transposeA: Bool, transposeB: Bool, beta: Float) throws {
        precondition(c.count >= M * N && a.count >= M * K && b.count >= K * N, "matmul operand too small")
        CBatonCPU.matmul(c.pointer, a.pointer, b.pointer, Int32(M), Int32(N), Int32(K), transposeA ? 1 : 0, transposeB ? 1 : 0, beta)
    }

    public func biasForward(out: Tensor, bias: Tensor, N: Int, OC: Int) throws {
        bias_forward(out.pointer, bias.pointer, Int32(N), Int32(OC))
    }

    public func biasBackward(dbias: Tensor, dout: Tensor, N: Int, OC: Int) throws {
        bias_backward(dbias.pointer, dout.pointer, Int32(N), Int32(OC))
    }

    public func attentionForward(out: Tensor, att: Tensor, qkv: Tensor, scratch: Tensor, B: Int, T: Int, C: Int, NH: Int) throws {
        attention_forward(out.pointer, att.pointer, qkv.pointer, scratch.pointer, Int32(B), Int32(T), Int32(C), Int32(NH))
    }

    public func attentionBackward(dqkv: Tensor, scratch: Tensor, dout: Tensor, qkv: Tensor, att: Tensor, B: Int, T: Int, C: Int, NH: Int) throws {
        attention_backward(dqkv.pointer, scratch.pointer, dout.pointer, qkv.pointer, att.pointer, Int32(B), Int32(T), Int32(C), Int32(NH))
    }

    public func geluForward(out: Tensor, input: Tensor) throws {
        gelu_forward(out.pointer, input.pointer, Int64(input.count))
    }

    public func geluBackward(dinput: Tensor, input: Tensor, dout: Tensor) throws {
        gelu_backward(dinput.pointer, input.pointer, dout.pointer, Int64(input.count))
    }

    public func residualForward(out: Tensor, a: Tensor, b: Tensor) throws {
        residual_forward(out.pointer, a.pointer, b.pointer, Int64(a.count))
    }

    public func softmaxCrossEntropy(losses: Tensor, dlogits: Tensor?, logits: Tensor, targets: TokenTensor, N: Int, V: Int, dloss: Float) throws {
        softmax_crossentropy(losses.pointer, dlogits?.pointer, logits.pointer, targets.pointer, Int32(N), Int32(V), dloss)
    }

    public func adamwUpdate(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, learningRate: Float, beta1: Float, beta2: Float,
                            eps: Float, weightDecay: Float, gradScale: Float, step: Int) throws {
        adamw_update(params.pointer, grads.pointer, m.pointer, v.pointer, Int64(params.count), learningRate, beta1, beta2, eps,
                     weightDecay, gradScale, Int64(step))
    }

    public func globalNormSquared(_ x: Tensor) throws -> Float {
        var result: Float = 0
        global_norm_squared(&result, x.pointer, Int64(x.count))
        return result
    }
}
