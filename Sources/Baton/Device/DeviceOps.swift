import CBatonABI

/// The ops, one per BATON_FOR_EACH_OP entry of baton_backend.h (see there for shapes): each
/// launches through `run`, which checks the backend for a recorded failure after it. Letters in
/// labels are the kernels' own: B batch, T sequence length, C channels, NH heads, N rows (B*T),
/// V vocabulary, OC output channels.
extension Device {
    /// An activation operand (baton_activation): it must be stored as this precision stores them.
    private func act(_ tensor: Tensor) -> UnsafeMutableRawPointer {
        precondition(
            tensor.element == activationElement, "an activation stored as \(tensor.element) in a \(precision) context")
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

    /// wpe nil: no position table (rotary models).
    public func encoderForward(
        out: Tensor, tokens: TokenTensor, wte: Tensor, wpe: Tensor?, B: Int, T: Int, C: Int
    ) throws {
        try run("encoder_forward") {
            ops.encoder_forward(
                context, out.pointer, tokens.pointer, wte.pointer, wpe?.pointer, Int32(B), Int32(T), Int32(C))
        }
    }

    /// `buckets`: the same tokens' rows grouped by token (EmbeddingBuckets, uploaded).
    public func encoderBackward(
        dwte: Tensor, dwpe: Tensor?, dout: Tensor, tokens: TokenTensor, buckets: DeviceBuckets, B: Int, T: Int,
        C: Int
    ) throws {
        try run("encoder_backward") {
            ops.encoder_backward(
                context, dwte.pointer, dwpe?.pointer, dout.pointer, tokens.pointer, buckets.rows.pointer,
                buckets.starts.pointer,
                Int32(buckets.count), Int32(B), Int32(T), Int32(C))
        }
    }

    public func layernormForward(
        out: Tensor, mean: Tensor, rstd: Tensor, input: Tensor, weight: Tensor, bias: Tensor, N: Int, C: Int
    ) throws {
        try run("layernorm_forward") {
            ops.layernorm_forward(
                context, act(out), mean.pointer, rstd.pointer, input.pointer, weight.pointer, bias.pointer, Int32(N),
                Int32(C))
        }
    }

    /// residual = a + b, then out = LayerNorm(residual) with its mean and rstd, in one op.
    public func residualLayernormForward(
        residual: Tensor, out: Tensor, mean: Tensor, rstd: Tensor, a: Tensor, b: Tensor, weight: Tensor,
        bias: Tensor, N: Int, C: Int
    ) throws {
        precondition(
            residual.count >= N * C && out.count >= N * C && a.count >= N * C && b.count >= N * C,
            "residual_layernorm operand too small")
        try run("residual_layernorm_forward") {
            ops.residual_layernorm_forward(
                context, residual.pointer, act(out), mean.pointer, rstd.pointer, a.pointer, act(b), weight.pointer,
                bias.pointer, Int32(N), Int32(C))
        }
    }

    /// dinputActivation, when given, also receives dinput (after the addition) as activations.
    public func layernormBackward(
        dinput: Tensor, dinputActivation: Tensor? = nil, dweight: Tensor, dbias: Tensor, dout: Tensor, input: Tensor,
        weight: Tensor, mean: Tensor, rstd: Tensor, N: Int, C: Int
    ) throws {
        try run("layernorm_backward") {
            ops.layernorm_backward(
                context, dinput.pointer, dinputActivation.map(act), dweight.pointer, dbias.pointer, act(dout),
                input.pointer, weight.pointer,
                mean.pointer, rstd.pointer, Int32(N), Int32(C))
        }
    }

    /// out = RMSNorm(input) with its rstd.
    public func rmsnormForward(
        out: Tensor, rstd: Tensor, input: Tensor, weight: Tensor, N: Int, C: Int, eps: Float
    )
        throws
    {
        precondition(out.count >= N * C && input.count >= N * C && rstd.count >= N, "rmsnorm operand too small")
        try run("rmsnorm_forward") {
            ops.rmsnorm_forward(context, act(out), rstd.pointer, input.pointer, weight.pointer, Int32(N), Int32(C), eps)
        }
    }

    /// residual = a + b, then out = RMSNorm(residual) with its rstd, in one op.
    public func residualRmsnormForward(
        residual: Tensor, out: Tensor, rstd: Tensor, a: Tensor, b: Tensor, weight: Tensor, N: Int, C: Int, eps: Float
    ) throws {
        precondition(
            residual.count >= N * C && out.count >= N * C && a.count >= N * C && b.count >= N * C,
            "residual_rmsnorm operand too small")
        try run("residual_rmsnorm_forward") {
            ops.residual_rmsnorm_forward(
                context, residual.pointer, act(out), rstd.pointer, a.pointer, act(b), weight.pointer, Int32(N),
                Int32(C), eps)
        }
    }

    /// dinput and dweight accumulate; dinputActivation as in layernormBackward.
    public func rmsnormBackward(
        dinput: Tensor, dinputActivation: Tensor? = nil, dweight: Tensor, dout: Tensor, input: Tensor, weight: Tensor,
        rstd: Tensor, N: Int, C: Int
    ) throws {
        try run("rmsnorm_backward") {
            ops.rmsnorm_backward(
                context, dinput.pointer, dinputActivation.map(act), dweight.pointer, act(dout), input.pointer,
                weight.pointer, rstd.pointer, Int32(N), Int32(C))
        }
    }

    /// Rotates the first `heads` heads of each row of x [B, T, width] by their position
    /// (`freqs` [T, HS/2, 2] cos and sin), in place; `backward` rotates a gradient back.
    public func rope(
        _ x: Tensor, freqs: Tensor, B: Int, T: Int, width: Int, heads: Int, HS: Int, backward: Bool = false
    ) throws {
        precondition(
            x.count >= B * T * width && heads * HS <= width && freqs.count >= T * HS && HS % 2 == 0,
            "rope operand too small")
        let name = backward ? "rope_backward" : "rope_forward"
        try run(name) {
            (backward ? ops.rope_backward : ops.rope_forward)(
                context, act(x), freqs.pointer, Int32(B), Int32(T), Int32(width), Int32(heads), Int32(HS))
        }
    }

    /// out[N, H] = silu(gate) * up from input [N, 2H] = [gate | up].
    public func swigluForward(out: Tensor, input: Tensor, N: Int, H: Int) throws {
        precondition(out.count >= N * H && input.count >= 2 * N * H, "swiglu operand too small")
        try run("swiglu_forward") { ops.swiglu_forward(context, act(out), act(input), Int32(N), Int32(H)) }
    }

    /// dinput [N, 2H] = the gradients of gate and up, given dout [N, H].
    public func swigluBackward(dinput: Tensor, dout: Tensor, input: Tensor, N: Int, H: Int) throws {
        precondition(dinput.count >= 2 * N * H && dout.count >= N * H && input.count >= 2 * N * H)
        try run("swiglu_backward") {
            ops.swiglu_backward(context, act(dinput), act(dout), act(input), Int32(N), Int32(H))
        }
    }

    /// c[M,N] = op(a)[M,K] @ op(b)[K,N] + beta * c; a and b are activations, and so is c when
    /// beta is 0 (else c is float32: a weight's gradient).
    public func matmul(
        c: Tensor, a: Tensor, b: Tensor, M: Int, N: Int, K: Int, transposeA: Bool, transposeB: Bool, beta: Float
    ) throws {
        precondition(c.count >= M * N && a.count >= M * K && b.count >= K * N, "matmul operand too small")
        let output = beta == 0 ? act(c) : UnsafeMutableRawPointer(c.pointer)
        try run("matmul") {
            ops.matmul(
                context, output, act(a), act(b), Int32(M), Int32(N), Int32(K), transposeA ? 1 : 0, transposeB ? 1 : 0,
                beta)
        }
    }

    /// out[N, outFeatures] = input @ weight + bias; with geluOut, also geluOut = GELU(out) (out keeps
    /// the pre-activation). One op, rounded once at the end in bf16. The weight is [inFeatures,
    /// outFeatures] (Conv1D), or with `transposedWeight` [outFeatures, inFeatures] (nn.Linear).
    public func linearForward(
        out: Tensor, geluOut: Tensor? = nil, input: Tensor, weight: Tensor, bias: Tensor?, N: Int, inFeatures: Int,
        outFeatures: Int, transposedWeight: Bool = false
    ) throws {
        precondition(
            out.count >= N * outFeatures && (geluOut?.count ?? Int.max) >= N * outFeatures
                && input.count >= N * inFeatures
                && weight.count >= inFeatures * outFeatures && (bias?.count ?? Int.max) >= outFeatures,
            "linear_forward operand too small")
        try run("linear_forward") {
            ops.linear_forward(
                context, act(out), geluOut.map(act), act(input), act(weight), bias.map(act), Int32(N),
                Int32(inFeatures), Int32(outFeatures), transposedWeight ? 1 : 0)
        }
    }

    /// dinput[N, inFeatures] = GELU'(preGelu) * (dout[N, outFeatures] @ weight^T): the gradient through a
    /// linear layer and the GELU before it, rounded once at the end in bf16.
    public func matmulGeluBackward(
        dinput: Tensor, dout: Tensor, weight: Tensor, preGelu: Tensor, N: Int, inFeatures: Int, outFeatures: Int
    ) throws {
        precondition(
            dinput.count >= N * inFeatures && preGelu.count >= N * inFeatures && dout.count >= N * outFeatures
                && weight.count >= inFeatures * outFeatures, "matmul_gelu_backward operand too small")
        try run("matmul_gelu_backward") {
            ops.matmul_gelu_backward(
                context, act(dinput), act(dout), act(weight), act(preGelu), Int32(N), Int32(inFeatures),
                Int32(outFeatures))
        }
    }

    public func biasBackward(dbias: Tensor, dout: Tensor, N: Int, OC: Int) throws {
        try run("bias_backward") { ops.bias_backward(context, dbias.pointer, act(dout), Int32(N), Int32(OC)) }
    }

    /// Causal attention of NH query heads over KV key/value heads (KV divides NH; KV = NH is
    /// multi-head attention): qkv [B, T, (NH + 2 KV) C/NH] holds the query heads, then the key
    /// heads, then the value heads; query head h reads key/value head h / (NH / KV). out [B, T, C].
    public func attentionForward(
        out: Tensor, saved: Tensor, qkv: Tensor, scratch: Tensor, B: Int, T: Int, C: Int, NH: Int, KV: Int
    ) throws {
        precondition(
            KV > 0 && NH % KV == 0 && C % NH == 0 && qkv.count >= B * T * (C + 2 * KV * (C / NH))
                && out.count >= B * T * C, "attention operand too small")
        try run("attention_forward") {
            ops.attention_forward(
                context, act(out), saved.pointer, act(qkv), scratch.pointer, Int32(B), Int32(T), Int32(C), Int32(NH),
                Int32(KV))
        }
    }

    /// dqkv in qkv's layout, each key/value head's gradients summed over its query heads. `out` and
    /// `saved` are what attentionForward left.
    public func attentionBackward(
        dqkv: Tensor, scratch: Tensor, dout: Tensor, qkv: Tensor, out: Tensor, saved: Tensor, B: Int, T: Int, C: Int,
        NH: Int, KV: Int
    ) throws {
        precondition(
            KV > 0 && NH % KV == 0 && C % NH == 0 && qkv.count >= B * T * (C + 2 * KV * (C / NH))
                && dqkv.count >= B * T * (C + 2 * KV * (C / NH)) && dout.count >= B * T * C,
            "attention operand too small")
        try run("attention_backward") {
            ops.attention_backward(
                context, act(dqkv), scratch.pointer, act(dout), act(qkv), act(out), saved.pointer, Int32(B), Int32(T),
                Int32(C), Int32(NH), Int32(KV))
        }
    }

    /// out = a + b, elementwise (out may be a or b): summing gradients.
    public func add(out: Tensor, a: Tensor, b: Tensor) throws {
        try run("add") { ops.add(context, out.pointer, a.pointer, b.pointer, Int64(a.count)) }
    }

    /// losses[n] = cross-entropy of row n over its first V of paddedV columns (nil: V); when
    /// dlogits is given it receives (softmax - onehot) * dloss, and 0 in the padded columns.
    public func softmaxCrossEntropy(
        losses: Tensor, dlogits: Tensor?, logits: Tensor, targets: TokenTensor, N: Int, V: Int, paddedV: Int? = nil,
        dloss: Float
    ) throws {
        try run("softmax_crossentropy") {
            ops.softmax_crossentropy(
                context, losses.pointer, dlogits.map(act), act(logits), targets.pointer, Int32(N), Int32(V),
                Int32(paddedV ?? V), dloss)
        }
    }

    /// AdamW over `params` in one call; weight decay where `decayRanges` says (nil: everywhere).
    public func adamwUpdate(
        params: Tensor, grads: Tensor, m: Tensor, v: Tensor, learningRate: Float, beta1: Float, beta2: Float,
        eps: Float, weightDecay: Float, gradScale: Float, step: Int, decayRanges: Ranges? = nil
    ) throws {
        let ranges = decayRanges.map { UnsafePointer($0.buffer.pointer.assumingMemoryBound(to: Int64.self)) }
        try run("adamw_update") {
            ops.adamw_update(
                context, params.pointer, grads.pointer, m.pointer, v.pointer, Int64(params.count), learningRate, beta1,
                beta2, eps,
                weightDecay, gradScale, Int64(step), ranges, Int32(decayRanges?.count ?? 0))
        }
    }

    /// The sum of squares of x, as a host value (one small transfer).
    public func globalNormSquared(_ x: Tensor) throws -> Float {
        try run("global_norm_squared") {
            ops.global_norm_squared(context, scalar.assumingMemoryBound(to: Float.self), x.pointer, Int64(x.count))
        }
        var result: Float = 0
        try require(table.pointee.copy_to_host(context, &result, scalar, 4), "global_norm_squared")
        return result
    }
}
