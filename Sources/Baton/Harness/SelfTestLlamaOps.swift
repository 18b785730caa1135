import Foundation

/// The Llama family's op checks: RMSNorm, rotary embeddings, SwiGLU, linear layers with
/// nn.Linear's [out, in] weights, and the embedding without a position table, on both devices, at
/// a shape and a precision (run by opChecks after the ops GPT-2 uses; its rows include attention
/// with grouped key/value heads).
extension SelfTest {
    mutating func llamaOpChecks(B: Int, T: Int, C: Int, NH: Int, V: Int) throws -> [Row] {
        let N = B * T, HS = C / NH, KV = NH % 2 == 0 ? NH / 2 : 1, width = (NH + 2 * KV) * HS
        let x = random(N * C), w = random(C), dout = random(N * C), dx = random(N * C, scale: 0.1),
            dwStart = random(C, scale: 0.1)
        let tokenValues: [Int32] = (0..<N).map { _ in Int32(generator.next() % UInt64(V)) }
        let wte = random(V * C)
        var rows: [Row] = []
        rows.append(
            try compare("encoder_forward, no position table", limit: 0) { d, input, out in
                let o = try out(N * C, nil), t = try d.allocate(tokens: N)
                try d.upload(tokens: tokenValues, to: t)
                try d.encoderForward(out: o, tokens: t, wte: try input(wte), wpe: nil, B: B, T: T, C: C)
                return [o]
            })
        // RMSNorm at the shape's width and at one that is not a whole number of 8-channel chunks.
        for (suffix, width) in [("", C), (", width not a multiple of 8", C - 1)] {
            let xs = Array(x[0..<(N * width)]), ys = Array(dout[0..<(N * width)]), ws = Array(w[0..<width])
            rows.append(
                try compare("rmsnorm ops\(suffix)", limit: storedLimit(1e-4)) { d, input, out in
                    let o = try out.activation(N * width, nil), rstd = try out(N, nil)
                    let xi = try input(xs), wi = try input(ws)
                    try d.rmsnormForward(out: o, rstd: rstd, input: xi, weight: wi, N: N, C: width, eps: 1e-6)
                    let r = try out(N * width, nil), o2 = try out.activation(N * width, nil), rstd2 = try out(N, nil)
                    try d.residualRmsnormForward(
                        residual: r, out: o2, rstd: rstd2, a: xi, b: try input.activation(ys), weight: wi, N: N,
                        C: width, eps: 1e-5)
                    let di = try out(N * width, Array(dx[0..<(N * width)])),
                        dw = try out(width, Array(dwStart[0..<width])), copy = try out.activation(N * width, nil)
                    try d.rmsnormBackward(
                        dinput: di, dinputActivation: copy, dweight: dw, dout: try input.activation(ys), input: xi,
                        weight: wi, rstd: rstd, N: N, C: width)
                    return [o, rstd, r, o2, rstd2, di, dw, copy]
                })
        }
        if HS % 2 == 0 {
            let qkv = random(N * width), freqs = RotaryEmbedding.table(length: T, headSize: HS, theta: 10000)
            for backward in [false, true] {
                rows.append(
                    try compare(backward ? "rope_backward" : "rope_forward", limit: storedLimit(1e-5)) {
                        d, input, out in
                        let o = try out.activation(N * width, qkv)
                        try d.rope(
                            o, freqs: try input(freqs), B: B, T: T, width: width, heads: NH + KV, HS: HS,
                            backward: backward)
                        return [o]
                    })
            }
        }
        let gateUp = random(N * 2 * C), dhidden = random(N * C)
        rows.append(
            try compare("swiglu_forward", limit: storedLimit(1e-5)) { d, input, out in
                let o = try out.activation(N * C, nil)
                try d.swigluForward(out: o, input: try input.activation(gateUp), N: N, H: C)
                return [o]
            })
        rows.append(
            try compare("swiglu_backward", limit: storedLimit(1e-5)) { d, input, out in
                let o = try out.activation(N * 2 * C, nil)
                try d.swigluBackward(
                    dinput: o, dout: try input.activation(dhidden), input: try input.activation(gateUp), N: N, H: C)
                return [o]
            })
        // nn.Linear's layout ([out, in]), with and without a bias, at a width cuBLASLt takes and one it may not.
        let matmulLimit = SelfTest.matmulLimit[device.precision]!
        let a = random(N * C), weight = random(3 * C * C), bias = random(3 * C)
        for (name, OC, hasBias) in [
            ("linear_forward, [out, in] weight", 3 * C, false), ("linear_forward, [out, in] weight, bias", 3 * C, true),
            ("linear_forward, [out, in] weight, unaligned", 3 * C - 1, true),
        ] {
            rows.append(
                try compare(name, limit: matmulLimit) { d, input, out in
                    let o = try out.activation(N * OC, nil)
                    try d.linearForward(
                        out: o, input: try input.activation(a),
                        weight: try input.activation(Array(weight[0..<(OC * C)])),
                        bias: hasBias ? try input.activation(Array(bias[0..<OC])) : nil, N: N, inFeatures: C,
                        outFeatures: OC, transposedWeight: true)
                    return [o]
                })
        }
        return rows
    }
}
