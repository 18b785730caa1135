import Foundation

/// The op checks: every op of the backend table on both devices, at a shape and a precision.
extension SelfTest {
    /// Every op at `shape`, with both devices' matmuls in `precision` (fp32 again afterwards).
    public mutating func opChecks(_ shape: OpShape, precision: Precision = .fp32) throws -> [Row] {
        try device.setPrecision(precision)
        try reference.setPrecision(precision)
        defer {
            try? device.setPrecision(.fp32)
            try? reference.setPrecision(.fp32)
        }
        let label = precision == .fp32 ? shape.label : "\(shape.label), \(precision.rawValue)"
        func labelled(_ row: Row) -> Row {
            Row(check: "\(row.check) [\(label)]", error: row.error, limit: row.limit, failure: row.failure)
        }
        // Rows reach onRow with their label too.
        let report = onRow
        onRow = { report(labelled($0)) }
        defer { onRow = report }
        return try opChecks(B: shape.B, T: shape.T, C: shape.C, NH: shape.NH, V: shape.V, vector: shape.vector).map(
            labelled)
    }

    mutating func opChecks(B: Int, T: Int, C: Int, NH: Int, V: Int, vector: Int) throws -> [Row] {
        let N = B * T
        let tokenValues: [Int32] = (0..<N).map { _ in Int32(generator.next() % UInt64(V)) }
        let targetValues: [Int32] = (0..<N).map { _ in Int32(generator.next() % UInt64(V)) }
        func tokens(_ d: Device, _ values: [Int32]) throws -> TokenTensor {
            let t = try d.allocate(tokens: values.count)
            try d.upload(tokens: values, to: t)
            return t
        }
        let x = random(N * C), w = random(C), b = random(C), dout = random(N * C), wte = random(V * C),
            wpe = random(T * C)
        let dwteStart = random(V * C, scale: 0.1), dwpeStart = random(T * C, scale: 0.1),
            dwStart = random(C, scale: 0.1), dbStart = random(C, scale: 0.1)
        let qkv = random(N * 3 * C), attOut = random(N * C), logits = random(N * V, scale: 3), grads = random(vector)
        let params = random(vector), m = random(vector, scale: 0.1), v = random(vector, scale: 0.1).map { abs($0) }
        let a = random(N * C), bMat = random(C * 3 * C), cStart = random(N * 3 * C), dx = random(N * C, scale: 0.1)
        var rows: [Row] = []
        rows.append(
            try compare("encoder_forward", limit: 1e-5) { d, _, out in
                let o = try out(N * C, nil)
                let w1 = try d.allocate(floats: V * C), w2 = try d.allocate(floats: T * C)
                try d.upload(wte, to: w1); try d.upload(wpe, to: w2)
                try d.encoderForward(out: o, tokens: try tokens(d, tokenValues), wte: w1, wpe: w2, B: B, T: T, C: C)
                return [o]
            })
        // The token embedding's gradient adds each token's rows in row order on every backend: the same bits.
        let buckets = try EmbeddingBuckets(tokens: tokenValues, vocabularySize: V)
        for (part, limit) in [("wte", 0.0), ("wpe", 1e-4)] {
            rows.append(
                try compare("encoder_backward, \(part)", limit: limit) { d, input, out in
                    let dw1 = try out(V * C, dwteStart), dw2 = try out(T * C, dwpeStart)
                    var deviceBuckets = try DeviceBuckets(device: d, rows: N)
                    try deviceBuckets.upload(buckets, on: d)
                    try d.encoderBackward(
                        dwte: dw1, dwpe: dw2, dout: try input(dout), tokens: try tokens(d, tokenValues),
                        buckets: deviceBuckets,
                        B: B, T: T, C: C)
                    return [part == "wte" ? dw1 : dw2]
                })
        }
        rows.append(
            try compare("layernorm_forward", limit: storedLimit(1e-5)) { d, input, out in
                let o = try out.activation(N * C, nil), mean = try out(N, nil), rstd = try out(N, nil)
                try d.layernormForward(
                    out: o, mean: mean, rstd: rstd, input: try input(x), weight: try input(w), bias: try input(b), N: N,
                    C: C)
                return [o, mean, rstd]
            })
        rows.append(
            try compare("residual_layernorm_forward", limit: storedLimit(1e-5)) { d, input, out in
                let r = try out(N * C, nil), o = try out.activation(N * C, nil), mean = try out(N, nil),
                    rstd = try out(N, nil)
                try d.residualLayernormForward(
                    residual: r, out: o, mean: mean, rstd: rstd, a: try input(x), b: try input.activation(dout),
                    weight: try input(w),
                    bias: try input(b), N: N, C: C)
                return [r, o, mean, rstd]
            })
        rows.append(
            try compare("layernorm_backward", limit: storedLimit(1e-4)) { d, input, out in
                let o = try d.allocate(activations: N * C), mean = try d.allocate(floats: N),
                    rstd = try d.allocate(floats: N)
                let xi = try input(x), wi = try input(w)
                try d.layernormForward(
                    out: o, mean: mean, rstd: rstd, input: xi, weight: wi, bias: try input(b), N: N, C: C)
                let di = try out(N * C, dx), dw = try out(C, dwStart), db = try out(C, dbStart),
                    copy = try out.activation(N * C, nil)
                try d.layernormBackward(
                    dinput: di, dinputActivation: copy, dweight: dw, dbias: db, dout: try input.activation(dout),
                    input: xi,
                    weight: wi, mean: mean, rstd: rstd, N: N, C: C)
                return [di, dw, db, copy]
            })
        // The three at a width that is not a whole number of 8-channel chunks (C - 1): a GPU's
        // channel-by-channel kernels, where the other rows run its 16-byte-access ones.
        let Cu = C - 1, xu = Array(x[0..<(N * Cu)]), yu = Array(dout[0..<(N * Cu)]), wu = Array(w[0..<Cu]),
            bu = Array(b[0..<Cu])
        rows.append(
            try compare("layernorm ops, width not a multiple of 8", limit: storedLimit(1e-4)) { d, input, out in
                let o = try out.activation(N * Cu, nil), mean = try out(N, nil), rstd = try out(N, nil)
                let xi = try input(xu), wi = try input(wu), bi = try input(bu)
                try d.layernormForward(out: o, mean: mean, rstd: rstd, input: xi, weight: wi, bias: bi, N: N, C: Cu)
                let r = try out(N * Cu, nil), o2 = try out.activation(N * Cu, nil), mean2 = try out(N, nil),
                    rstd2 = try out(N, nil)
                try d.residualLayernormForward(
                    residual: r, out: o2, mean: mean2, rstd: rstd2, a: xi, b: try input.activation(yu), weight: wi,
                    bias: bi,
                    N: N, C: Cu)
                let di = try out(N * Cu, Array(dx[0..<(N * Cu)])), dw = try out(Cu, Array(dwStart[0..<Cu])),
                    db = try out(Cu, Array(dbStart[0..<Cu]))
                let copy = try out.activation(N * Cu, nil)
                try d.layernormBackward(
                    dinput: di, dinputActivation: copy, dweight: dw, dbias: db, dout: try input.activation(yu),
                    input: xi, weight: wi,
                    mean: mean, rstd: rstd, N: N, C: Cu)
                return [o, mean, rstd, r, o2, mean2, rstd2, di, dw, db, copy]
            })
        let matmulLimit = SelfTest.matmulLimit[device.precision]!
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            rows.append(
                try compare("matmul\(ta ? " A^T" : "")\(tb ? " B^T" : "")", limit: matmulLimit) { d, input, out in
                    let c = try out(N * 3 * C, cStart)  // beta = 1: accumulates onto the start values
                    try d.matmul(
                        c: c, a: try input.activation(a), b: try input.activation(bMat), M: N, N: 3 * C, K: C,
                        transposeA: ta,
                        transposeB: tb, beta: 1)
                    return [c]
                })
        }
        rows.append(
            try compare("matmul, fresh output", limit: matmulLimit) { d, input, out in
                let c = try out.activation(N * 3 * C, nil)  // beta = 0: an activation (bf16 in bf16)
                try d.matmul(
                    c: c, a: try input.activation(a), b: try input.activation(bMat), M: N, N: 3 * C, K: C,
                    transposeA: false, transposeB: false, beta: 0)
                return [c]
            })
        // The linear layer's fused ops, at a width cuBLASLt takes (3C, a multiple of 8) and at one it
        // declines for GELU's auxiliary matrix (3C - 1, C - 1), where a matmul and an epilogue kernel stand in.
        // The fused GELU is cuBLASLt's own (CUBLASLT_EPILOGUE_GELU_AUX_BIAS: the tanh approximation,
        // evaluated NVIDIA's way), not baton_gelu.h's expression, so its bits may differ from the
        // CPU's. These rows are held to the matmul limit (fp32: 1e-4 of the largest output): a tanh
        // within a few ulps meets it with room, while the exact-erf GELU, up to 4.7e-4 away from the
        // tanh form (near x = -2.7), exceeds it at these inputs' scale. Not run on a GPU: an
        // approximate tanh in cuBLASLt (tanh.approx, about 2^-11 relative) would show here first.
        let linearBias = random(3 * C)
        for (name, OC, gelu) in [
            ("linear_forward", 3 * C, false), ("linear_forward, gelu", 3 * C, true),
            ("linear_forward, gelu, unaligned", 3 * C - 1, true),
        ] {
            rows.append(
                try compare(name, limit: matmulLimit) { d, input, out in
                    let o = try out.activation(N * OC, nil), g = gelu ? try out.activation(N * OC, nil) : nil
                    try d.linearForward(
                        out: o, geluOut: g, input: try input.activation(a),
                        weight: try input.activation(Array(bMat[0..<(C * OC)])),
                        bias: try input.activation(Array(linearBias[0..<OC])), N: N, inFeatures: C, outFeatures: OC)
                    return [o] + (g.map { [$0] } ?? [])
                })
        }
        for (suffix, IC) in [("", C), (", unaligned", C - 1)] {
            rows.append(
                try compare("matmul_gelu_backward\(suffix)", limit: matmulLimit) { d, input, out in
                    let di = try out.activation(N * IC, nil)
                    try d.matmulGeluBackward(
                        dinput: di, dout: try input.activation(cStart),
                        weight: try input.activation(Array(bMat[0..<(IC * 3 * C)])),
                        preGelu: try input.activation(Array(x[0..<(N * IC)])), N: N, inFeatures: IC, outFeatures: 3 * C)
                    return [di]
                })
        }
        rows.append(
            try compare("bias_backward", limit: 1e-4) { d, input, out in
                let db = try out(C, dbStart)
                try d.biasBackward(dbias: db, dout: try input.activation(dout), N: N, OC: C)
                return [db]
            })
        // What attention keeps for its backward pass is each backend's own (probabilities on the
        // CPU, log-sum-exps with flash attention): the output and the gradients are compared. With
        // every head its own keys and values (KV = NH, GPT-2), and grouped as the Llama family's
        // (KV = NH/2, and multi-query KV = 1; qkv then (NH + 2 KV) heads wide, the first values of
        // the same inputs): a key/value head's gradients sum over its group of query heads.
        let attentionLimit = SelfTest.attentionLimit[device.precision]!
        var groupings = [("", NH)]
        if NH % 2 == 0 && NH / 2 > 1 { groupings.append((", grouped (KV = NH/2)", NH / 2)) }
        if NH > 1 { groupings.append((", multi-query (KV = 1)", 1)) }
        for (suffix, KV) in groupings {
            let width = C + 2 * KV * (C / NH), heads = Array(qkv[0..<(N * width)])
            rows.append(
                try compare("attention_forward\(suffix)", limit: attentionLimit) { d, input, out in
                    let sizes = d.attentionSizes(B: B, T: T, C: C, NH: NH, KV: KV)
                    let o = try out.activation(N * C, nil), saved = try d.allocate(floats: sizes.saved),
                        scratch = try d.allocate(floats: sizes.scratch)
                    try d.attentionForward(
                        out: o, saved: saved, qkv: try input.activation(heads), scratch: scratch, B: B, T: T, C: C,
                        NH: NH, KV: KV)
                    return [o]
                })
            rows.append(
                try compare("attention_backward\(suffix)", limit: attentionLimit) { d, input, out in
                    let sizes = d.attentionSizes(B: B, T: T, C: C, NH: NH, KV: KV)
                    let o = try d.allocate(activations: N * C), saved = try d.allocate(floats: sizes.saved),
                        scratch = try d.allocate(floats: sizes.scratch)
                    let q = try input.activation(heads)
                    try d.attentionForward(
                        out: o, saved: saved, qkv: q, scratch: scratch, B: B, T: T, C: C, NH: NH, KV: KV)
                    let dq = try out.activation(N * width, nil)
                    try d.attentionBackward(
                        dqkv: dq, scratch: scratch, dout: try input.activation(attOut), qkv: q, out: o, saved: saved,
                        B: B, T: T, C: C, NH: NH, KV: KV)
                    return [dq]
                })
        }
        rows.append(
            try compare("add", limit: 1e-5) { d, input, out in
                let o = try out(N * C, nil)
                try d.add(out: o, a: try input(x), b: try input(dout))
                return [o]
            })
        rows.append(
            try compare("softmax_crossentropy", limit: storedLimit(1e-5)) { d, input, out in
                let losses = try out(N, nil), l = try input.activation(logits)
                try d.softmaxCrossEntropy(
                    losses: losses, dlogits: l, logits: l, targets: try tokens(d, targetValues), N: N, V: V, dloss: 0.5)
                return [losses, l]
            })
        // The padded vocabulary: rows of Vp columns, the ones past V holding garbage that must not count.
        let Vp = (V + 63) / 64 * 64
        let garbage: [Float] = (0..<(Vp - V)).map { Float($0 % 7) * 100 }
        var paddedLogits: [Float] = []
        for n in 0..<N { paddedLogits += logits[(n * V)..<((n + 1) * V)] + garbage }
        rows.append(
            try compare("softmax_crossentropy, padded", limit: storedLimit(1e-5)) { d, input, out in
                let losses = try out(N, nil), l = try input.activation(paddedLogits)
                try d.softmaxCrossEntropy(
                    losses: losses, dlogits: l, logits: l, targets: try tokens(d, targetValues), N: N, V: V,
                    paddedV: Vp, dloss: 0.5)
                return [losses, l]
            })
        // Masked positions (supervised fine-tuning): every third target ignored, then all of them;
        // their losses and gradient rows must come out 0 on both backends (padded rows too).
        let someIgnored = targetValues.enumerated().map { $0.offset % 3 == 1 ? Int32(-1) : $0.element }
        let allIgnored = [Int32](repeating: -1, count: targetValues.count)
        for (name, targets) in [("some", someIgnored), ("all", allIgnored)] {
            rows.append(
                try compare("softmax_crossentropy, \(name) targets ignored", limit: storedLimit(1e-5)) {
                    d, input, out in
                    let losses = try out(N, nil), l = try input.activation(paddedLogits)
                    try d.softmaxCrossEntropy(
                        losses: losses, dlogits: l, logits: l, targets: try tokens(d, targets), N: N, V: V,
                        paddedV: Vp, dloss: 0.5)
                    return [losses, l]
                })
        }
        rows.append(
            try compare("adamw_update", limit: 1e-5) { d, input, out in
                let p = try out(vector, params), mi = try out(vector, m), vi = try out(vector, v)
                try d.adamwUpdate(
                    params: p, grads: try input(grads), m: mi, v: vi, learningRate: 1e-3, beta1: 0.9, beta2: 0.95,
                    eps: 1e-8,
                    weightDecay: 0.1, gradScale: 0.7, step: 5)
                return [p, mi, vi]
            })
        rows.append(
            try compare("adamw_update, decay ranges", limit: 1e-5) { d, input, out in
                let p = try out(vector, params), mi = try out(vector, m), vi = try out(vector, v)
                let ranges = try d.upload(ranges: [
                    3..<(vector / 5), (vector / 3)..<(vector / 2), (vector - 7)..<vector,
                ])
                try d.adamwUpdate(
                    params: p, grads: try input(grads), m: mi, v: vi, learningRate: 1e-3, beta1: 0.9, beta2: 0.95,
                    eps: 1e-8,
                    weightDecay: 0.5, gradScale: 0.7, step: 5, decayRanges: ranges)
                return [p, mi, vi]
            })
        rows.append(
            try compare("global_norm_squared", limit: 1e-4) { d, input, out in
                let value = try d.globalNormSquared(try input(grads + params + m))
                let o = try out(1, [value])
                return [o]
            })
        rows.append(
            try compare("fill", limit: 0) { d, _, out in
                let o = try out(1000, nil)
                try d.fill(o, with: 0.25)
                return [o]
            })
        return rows + (try llamaOpChecks(B: B, T: T, C: C, NH: NH, V: V))
    }
}
