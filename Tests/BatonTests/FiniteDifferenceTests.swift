import CBatonABI
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// Every backward op against central finite differences of its forward op, on random inputs.
/// The scalar checked is L = sum(w * out) for a random w; the analytic gradient is the backward op
/// run with dout = w.
final class FiniteDifferenceTests: XCTestCase {
    let device = Device.cpu()
    var generator = RandomGenerator(seed: 7)

    func random(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in Float(generator.nextNormal()) * scale }
    }

    func tensor(_ values: [Float]) throws -> Tensor {
        let t = try device.allocate(floats: values.count)
        try device.upload(values, to: t)
        return t
    }

    func tokens(_ values: [Int32]) throws -> TokenTensor {
        let t = try device.allocate(tokens: values.count)
        try device.upload(tokens: values, to: t)
        return t
    }

    /// Compares `analytic` with central differences of `loss` around `x`, on up to `samples` entries.
    func checkGradient(
        _ what: String, x: [Float], analytic: [Float], eps: Float = 1e-2, samples: Int = 48,
        loss: ([Float]) throws -> Double, file: StaticString = #filePath, line: UInt = #line
    ) rethrows {
        XCTAssertEqual(x.count, analytic.count, file: file, line: line)
        let scale = analytic.map { abs($0) }.max() ?? 0
        XCTAssertGreaterThan(scale, 0, "\(what): analytic gradient is all zero", file: file, line: line)
        let stride = max(1, x.count / samples)
        for i in Swift.stride(from: 0, to: x.count, by: stride) {
            var plus = x, minus = x
            plus[i] += eps
            minus[i] -= eps
            let numeric = Float((try loss(plus) - loss(minus)) / Double(2 * eps))
            XCTAssertLessThanOrEqual(
                abs(numeric - analytic[i]), 1e-2 * scale + 1e-3,
                "\(what)[\(i)]: numeric \(numeric) vs analytic \(analytic[i])", file: file, line: line)
        }
    }

    func weightedSum(_ out: Tensor, _ w: [Float]) throws -> Double {
        let values = try device.download(out)
        return zip(values, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    }

    func testEncoderBackward() throws {
        let B = 2, T = 3, C = 4, V = 5
        let ids: [Int32] = [0, 3, 3, 1, 4, 0]
        let wte = random(V * C), wpe = random(T * C), w = random(B * T * C)
        let out = try device.allocate(floats: B * T * C), tok = try tokens(ids)
        func loss(_ wte: [Float], _ wpe: [Float]) throws -> Double {
            try device.encoderForward(
                out: out, tokens: tok, wte: try tensor(wte), wpe: try tensor(wpe), B: B, T: T, C: C)
            return try weightedSum(out, w)
        }
        let dwte = try tensor([Float](repeating: 0, count: V * C)),
            dwpe = try tensor([Float](repeating: 0, count: T * C))
        var buckets = try DeviceBuckets(device: device, rows: ids.count)
        try buckets.upload(try EmbeddingBuckets(tokens: ids, vocabularySize: V), on: device)
        try device.encoderBackward(
            dwte: dwte, dwpe: dwpe, dout: try tensor(w), tokens: tok, buckets: buckets, B: B, T: T, C: C)
        try checkGradient("dwte", x: wte, analytic: try device.download(dwte)) { try loss($0, wpe) }
        try checkGradient("dwpe", x: wpe, analytic: try device.download(dwpe)) { try loss(wte, $0) }
    }

    func testLayerNormBackward() throws {
        let N = 6, C = 8
        let x = random(N * C), weight = random(C), bias = random(C), w = random(N * C)
        let out = try device.allocate(floats: N * C), mean = try device.allocate(floats: N),
            rstd = try device.allocate(floats: N)
        func loss(_ x: [Float], _ weight: [Float], _ bias: [Float]) throws -> Double {
            try device.layernormForward(
                out: out, mean: mean, rstd: rstd, input: try tensor(x), weight: try tensor(weight),
                bias: try tensor(bias), N: N, C: C)
            return try weightedSum(out, w)
        }
        _ = try loss(x, weight, bias)
        let dx = try tensor([Float](repeating: 0, count: N * C)), dw = try tensor([Float](repeating: 0, count: C)),
            db = try tensor([Float](repeating: 0, count: C))
        try device.layernormBackward(
            dinput: dx, dweight: dw, dbias: db, dout: try tensor(w), input: try tensor(x),
            weight: try tensor(weight), mean: mean, rstd: rstd, N: N, C: C)
        try checkGradient("layernorm dinput", x: x, analytic: try device.download(dx)) { try loss($0, weight, bias) }
        try checkGradient("layernorm dweight", x: weight, analytic: try device.download(dw)) { try loss(x, $0, bias) }
        try checkGradient("layernorm dbias", x: bias, analytic: try device.download(db)) { try loss(x, weight, $0) }
    }

    /// The linear layer's backward (as GPT uses it): da = dc @ b^T and db = a^T @ dc, through
    /// matmul's transpose flags, plus the bias gradient.
    func testMatmulAndBiasBackward() throws {
        let M = 5, K = 7, N = 6
        let a = random(M * K), b = random(K * N), bias = random(N), w = random(M * N)
        let c = try device.allocate(floats: M * N)
        func loss(_ a: [Float], _ b: [Float], _ bias: [Float]) throws -> Double {
            try device.linearForward(
                out: c, input: try tensor(a), weight: try tensor(b), bias: try tensor(bias), N: M, inFeatures: K,
                outFeatures: N)
            return try weightedSum(c, w)
        }
        let dc = try tensor(w), da = try device.allocate(floats: M * K),
            dbias = try tensor([Float](repeating: 0, count: N))
        let db = try tensor([Float](repeating: 0, count: K * N))
        try device.matmul(
            c: da, a: dc, b: try tensor(b), M: M, N: K, K: N, transposeA: false, transposeB: true, beta: 0)
        try device.matmul(
            c: db, a: try tensor(a), b: dc, M: K, N: N, K: M, transposeA: true, transposeB: false, beta: 1)
        try device.biasBackward(dbias: dbias, dout: dc, N: M, OC: N)
        try checkGradient("matmul da", x: a, analytic: try device.download(da)) { try loss($0, b, bias) }
        try checkGradient("matmul db", x: b, analytic: try device.download(db)) { try loss(a, $0, bias) }
        try checkGradient("bias", x: bias, analytic: try device.download(dbias)) { try loss(a, b, $0) }
    }

    /// matmul with both operands transposed against a direct triple loop, and beta accumulation.
    func testMatmulTransposesAgainstLoops() throws {
        let M = 4, K = 3, N = 5
        let aT = random(K * M), bT = random(N * K), start = random(M * N)
        let c = try tensor(start)
        try device.matmul(
            c: c, a: try tensor(aT), b: try tensor(bT), M: M, N: N, K: K, transposeA: true, transposeB: true, beta: 1)
        var expected = start
        for i in 0..<M { for j in 0..<N { for k in 0..<K { expected[i * N + j] += aT[k * M + i] * bT[j * K + k] } } }
        assertClose(try device.download(c), expected, rtol: 1e-6, "matmul with transposes")
    }

    /// The memory figure the selftest prints comes from Activations.byteCount: it must be what
    /// Activations really allocates, with float32 activations and with bf16 ones.
    func testActivationByteCountIsWhatActivationsAllocate() throws {
        let config = GPTConfig(contextLength: 16, vocabularySize: 37, layers: 2, heads: 2, channels: 8)
        let sizes = device.attentionSizes(B: 3, T: 16, C: 8, NH: 2, KV: 2)
        defer { try? device.setPrecision(.fp32) }
        var measured: [Int] = []
        for (precision, element) in [(Precision.fp32, ElementType.float32), (.bf16, .bfloat16)] {
            try device.setPrecision(precision)
            let before = device.allocatedBytes
            _ = try Activations(config: config, B: 3, T: 16, device: device)
            measured.append(device.allocatedBytes - before)
            XCTAssertEqual(
                measured.last,
                Activations.byteCount(
                    config: config, B: 3, T: 16, attentionSaved: sizes.saved,
                    attentionScratch: sizes.scratch, element: element), "\(precision)")
        }
        XCTAssertLessThan(measured[1], measured[0], "bf16 activations take less memory")
    }

    /// Multi-head attention (every head its own keys and values), grouped (two query heads a
    /// key/value head) and multi-query (one key/value head).
    func testAttentionBackward() throws {
        for (NH, KV) in [(2, 2), (4, 2), (4, 1)] { try checkAttentionBackward(NH: NH, KV: KV) }
    }

    func checkAttentionBackward(NH: Int, KV: Int) throws {
        let B = 2, T = 5, C = 8, width = C + 2 * KV * (C / NH)
        let qkv = random(B * T * width), w = random(B * T * C)
        let sizes = device.attentionSizes(B: B, T: T, C: C, NH: NH, KV: KV)
        XCTAssertEqual(sizes.saved, B * NH * T * T, "the CPU keeps the probabilities")
        let out = try device.allocate(floats: B * T * C), att = try device.allocate(floats: sizes.saved)
        let scratch = try device.allocate(floats: sizes.scratch)
        func loss(_ qkv: [Float]) throws -> Double {
            try device.attentionForward(
                out: out, saved: att, qkv: try tensor(qkv), scratch: scratch, B: B, T: T, C: C, NH: NH, KV: KV)
            return try weightedSum(out, w)
        }
        _ = try loss(qkv)
        // Probabilities: rows sum to one, nothing above the diagonal.
        let probabilities = try device.download(att)
        for row in 0..<(B * NH * T) {
            let t = row % T
            let values = probabilities[(row * T)..<((row + 1) * T)]
            XCTAssertEqual(values.reduce(0, +), 1, accuracy: 1e-5)
            XCTAssert(values.dropFirst(t + 1).allSatisfy { $0 == 0 }, "causal mask broken in row \(row)")
        }
        let dqkv = try device.allocate(floats: B * T * width)
        try device.fill(dqkv, with: .nan)  // backward must overwrite every entry
        try device.attentionBackward(
            dqkv: dqkv, scratch: scratch, dout: try tensor(w), qkv: try tensor(qkv), out: out, saved: att,
            B: B, T: T, C: C, NH: NH, KV: KV)
        try checkGradient(
            "attention dqkv, \(NH) heads, \(KV) key/value heads", x: qkv, analytic: try device.download(dqkv),
            samples: 240
        ) { try loss($0) }
    }

    /// GELU's gradient formula against GELU (baton_gelu.h, what the linear layers' kernels compute).
    func testGeluBackward() throws {
        let n = 64
        let x = random(n, scale: 2), w = random(n)
        func loss(_ x: [Float]) throws -> Double {
            zip(x, w).reduce(0.0) { $0 + Double(baton_gelu($1.0)) * Double($1.1) }
        }
        let dx = zip(x, w).map { baton_gelu_backward($0, $1) }
        try checkGradient("gelu", x: x, analytic: dx, eps: 1e-3) { try loss($0) }
    }

    func testSoftmaxCrossEntropyBackward() throws {
        let N = 4, V = 9
        let logits = random(N * V, scale: 2), w = random(N)
        let targets = try tokens([1, 8, 0, 4])
        let losses = try device.allocate(floats: N)
        func loss(_ logits: [Float]) throws -> Double {
            try device.softmaxCrossEntropy(
                losses: losses, dlogits: nil, logits: try tensor(logits), targets: targets, N: N, V: V, dloss: 0)
            return try weightedSum(losses, w)
        }
        // dloss scales every row alike, so check the unweighted sum of the losses with dloss = 1.
        let ones = [Float](repeating: 1, count: N)
        let dlogits = try tensor(logits)  // in place, as the model runs it
        try device.softmaxCrossEntropy(
            losses: losses, dlogits: dlogits, logits: dlogits, targets: targets, N: N, V: V, dloss: 1)
        let analytic = try device.download(dlogits)
        try checkGradient("softmax cross-entropy", x: logits, analytic: analytic) { logits in
            try device.softmaxCrossEntropy(
                losses: losses, dlogits: nil, logits: try tensor(logits), targets: targets, N: N, V: V, dloss: 0)
            return try weightedSum(losses, ones)
        }
        _ = try loss(logits)
        // The losses themselves against a direct log-sum-exp.
        let values = try device.download(losses)
        for n in 0..<N {
            let row = logits[(n * V)..<((n + 1) * V)].map(Double.init)
            let target = [1, 8, 0, 4][n]
            let lse = log(row.map { exp($0) }.reduce(0, +))
            XCTAssertEqual(Double(values[n]), lse - row[target], accuracy: 1e-5)
        }
    }

    /// The whole model's backward (the wiring of every op, the tied head, the residual stream)
    /// against finite differences of the model loss, on a few entries of every parameter.
    func testWholeModelBackward() throws {
        let config = GPTConfig(contextLength: 6, vocabularySize: 11, layers: 2, heads: 2, channels: 8)
        let model = try GPT(config: config, device: device)
        try model.initializeParameters(seed: 3)
        // Larger random weights than GPT-2's init so every path carries a visible gradient.
        let initial = random(model.layout.totalCount, scale: 0.3)
        try device.upload(initial, to: model.parameters)
        let B = 2, T = 6
        let inputs = (0..<(B * T)).map { _ in Int32(generator.next() % 11) },
            targets = (0..<(B * T)).map { _ in Int32(generator.next() % 11) }
        try model.zeroGradients()
        try model.forward(inputs: inputs, targets: targets, B: B, T: T, lossScaleForBackward: 1)
        try model.backward()
        let gradients = try device.download(model.gradients)
        for spec in model.layout.specs {
            let range = spec.offset..<(spec.offset + spec.count)
            try checkGradient(
                spec.name, x: Array(initial[range]), analytic: Array(gradients[range]), eps: 1e-2, samples: 6
            ) { values in
                var all = initial
                all.replaceSubrange(range, with: values)
                try device.upload(all, to: model.parameters)
                return Double(try model.forward(inputs: inputs, targets: targets, B: B, T: T))
            }
        }
    }

    func testAdamWAgainstScalarReference() throws {
        let n = 10
        let p = random(n), g = random(n), m0 = random(n, scale: 0.1), v0 = random(n, scale: 0.1).map { abs($0) }
        let params = try tensor(p), m = try tensor(m0), v = try tensor(v0)
        let lr: Float = 0.01, b1: Float = 0.9, b2: Float = 0.95, eps: Float = 1e-8, wd: Float = 0.1, scale: Float = 0.5,
            step = 3
        try device.adamwUpdate(
            params: params, grads: try tensor(g), m: m, v: v, learningRate: lr, beta1: b1, beta2: b2, eps: eps,
            weightDecay: wd, gradScale: scale, step: step)
        let out = try device.download(params)
        for i in 0..<n {
            let grad = Double(g[i] * scale)
            let mi = 0.9 * Double(m0[i]) + 0.1 * grad, vi = 0.95 * Double(v0[i]) + 0.05 * grad * grad
            let mhat = mi / (1 - pow(0.9, 3)), vhat = vi / (1 - pow(0.95, 3))
            let expected = Double(p[i]) * (1 - 0.01 * 0.1) - 0.01 * mhat / (vhat.squareRoot() + 1e-8)
            XCTAssertEqual(Double(out[i]), expected, accuracy: 1e-6)
        }
    }

    func testGlobalNormAgainstDoubleSum() throws {
        let x = random(200_003)  // several chunks and a ragged tail
        let expected = x.reduce(0.0) { $0 + Double($1) * Double($1) }
        XCTAssertEqual(Double(try device.globalNormSquared(try tensor(x))), expected, accuracy: expected * 1e-6)
    }
}
