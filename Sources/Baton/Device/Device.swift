/// Which backend runs the ops.
public enum DeviceKind: String, Codable, CaseIterable, Sendable {
    case cpu, cuda
}

/// The ops a GPT training step needs, on memory the device owns. The model, the optimizer and the
/// trainer are written against this protocol only. Each op mirrors one function type in
/// `baton_backend.h`; see there for shapes. Letters in labels are the kernels' own: B batch,
/// T sequence length, C channels, NH heads, N rows (B*T), V vocabulary, OC output channels.
public protocol Device: AnyObject {
    var kind: DeviceKind { get }
    /// A line for logs: the backend and what it runs on.
    var summary: String { get }
    /// Buffers allocated so far. Everything a run needs is allocated before its first step (no
    /// allocation in the step loop); the selftest and the tests hold the trainer to that.
    var allocationCount: Int { get }

    func allocate(floats count: Int) throws -> Tensor
    func allocate(tokens count: Int) throws -> TokenTensor
    func upload(_ values: UnsafeBufferPointer<Float>, to tensor: Tensor) throws
    func download(_ tensor: Tensor, into values: UnsafeMutableBufferPointer<Float>) throws
    func upload(tokens: UnsafeBufferPointer<Int32>, to tensor: TokenTensor) throws
    func copy(_ source: Tensor, to destination: Tensor) throws
    func synchronize() throws

    func fill(_ x: Tensor, with value: Float) throws
    func encoderForward(out: Tensor, tokens: TokenTensor, wte: Tensor, wpe: Tensor, B: Int, T: Int, C: Int) throws
    func encoderBackward(dwte: Tensor, dwpe: Tensor, dout: Tensor, tokens: TokenTensor, B: Int, T: Int, C: Int) throws
    func layernormForward(out: Tensor, mean: Tensor, rstd: Tensor, input: Tensor, weight: Tensor, bias: Tensor, N: Int, C: Int) throws
    func layernormBackward(dinput: Tensor, dweight: Tensor, dbias: Tensor, dout: Tensor, input: Tensor, weight: Tensor,
                           mean: Tensor, rstd: Tensor, N: Int, C: Int) throws
    /// c[M,N] = op(a)[M,K] @ op(b)[K,N] + beta * c
    func matmul(c: Tensor, a: Tensor, b: Tensor, M: Int, N: Int, K: Int, transposeA: Bool, transposeB: Bool, beta: Float) throws
    func biasForward(out: Tensor, bias: Tensor, N: Int, OC: Int) throws
    func biasBackward(dbias: Tensor, dout: Tensor, N: Int, OC: Int) throws
    /// scratch: attentionScratchCount(B:T:C:NH:) floats, used by both attention ops.
    func attentionForward(out: Tensor, att: Tensor, qkv: Tensor, scratch: Tensor, B: Int, T: Int, C: Int, NH: Int) throws
    func attentionBackward(dqkv: Tensor, scratch: Tensor, dout: Tensor, qkv: Tensor, att: Tensor, B: Int, T: Int, C: Int, NH: Int) throws
    func geluForward(out: Tensor, input: Tensor) throws
    func geluBackward(dinput: Tensor, input: Tensor, dout: Tensor) throws
    func residualForward(out: Tensor, a: Tensor, b: Tensor) throws
    /// losses[n] = cross-entropy of row n; when dlogits is given it receives (softmax - onehot) * dloss.
    func softmaxCrossEntropy(losses: Tensor, dlogits: Tensor?, logits: Tensor, targets: TokenTensor, N: Int, V: Int, dloss: Float) throws
    func adamwUpdate(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, learningRate: Float, beta1: Float, beta2: Float,
                     eps: Float, weightDecay: Float, gradScale: Float, step: Int) throws
    /// The sum of squares of x, as a host value (one small transfer).
    func globalNormSquared(_ x: Tensor) throws -> Float

    /// Runs `body` on the tensor's values in host memory: the buffer itself on the CPU, a copy
    /// on a GPU. For checkpoint writes, which must not cost a second copy on the CPU.
    func withHostMemory<R>(of tensor: Tensor, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R
}

/// Floats of scratch the attention ops need (BATON_ATTENTION_SCRATCH in baton_backend.h).
public func attentionScratchCount(B: Int, T: Int, C: Int, NH: Int) -> Int { B * NH * T * T + 7 * B * T * C }

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
