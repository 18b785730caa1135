import CBatonABI
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The fused and regrouped ops give the bits of what they replace: residual + LayerNorm in one op,
/// and the token embedding's gradient summed token by token from the batch's buckets.
final class FusedOpTests: XCTestCase {
    let device = Device.cpu(threads: 2)
    var generator = RandomGenerator(seed: 11)

    func random(_ count: Int) -> [Float] { (0..<count).map { _ in Float(generator.nextNormal()) } }

    func tensor(_ values: [Float]) throws -> Tensor {
        let t = try device.allocate(floats: values.count)
        try device.upload(values, to: t)
        return t
    }

    func testBucketsGroupRowsByTokenInRowOrder() throws {
        let buckets = try EmbeddingBuckets(tokens: [4, 1, 4, 0, 1, 4], vocabularySize: 6)
        XCTAssertEqual(buckets.rows, [3, 1, 4, 0, 2, 5])  // token 0: row 3; token 1: rows 1, 4; token 4: rows 0, 2, 5
        XCTAssertEqual(buckets.starts, [0, 1, 3, 6])
        XCTAssertEqual(buckets.count, 3)
        let empty = try EmbeddingBuckets(tokens: [], vocabularySize: 3)
        XCTAssertEqual(empty.count, 0)
        XCTAssertEqual(empty.starts, [0])
        // A token the embedding has no row for is an error naming it, not a crash.
        XCTAssertThrowsError(try EmbeddingBuckets(tokens: [1, 3], vocabularySize: 3)) { error in
            XCTAssert("\(error)".contains("token 3 at position 1"), "\(error)")
        }
    }

    /// Every forward pass (training, evaluation, sampling's logits) refuses a token the embedding
    /// has no row for, naming it, before any kernel reads the embedding.
    func testAForwardPassRefusesATokenOutsideTheVocabulary() throws {
        let model = try GPT(
            config: GPTConfig(contextLength: 4, vocabularySize: 10, layers: 1, heads: 2, channels: 8), device: device)
        try model.initializeParameters(seed: 1)
        let inputs: [Int32] = [1, 2, 10, 3], targets: [Int32] = [2, 3, 3, 4]
        for scale in [nil, Float(1)] {
            XCTAssertThrowsError(
                try model.forward(inputs: inputs, targets: targets, B: 1, T: 4, lossScaleForBackward: scale)
            ) { error in
                XCTAssert("\(error)".contains("token 10 at position 2"), "\(error)")
            }
        }
        XCTAssertThrowsError(try model.logits(inputs: inputs, B: 1, T: 4))
        XCTAssertNoThrow(
            try model.forward(inputs: [1, 2, 9, 3], targets: targets, B: 1, T: 4, lossScaleForBackward: 1))
    }

    func testResidualLayernormIsTheTwoOpsBitForBit() throws {
        let N = 37, C = 96
        let a = try tensor(random(N * C)), b = try tensor(random(N * C)), weight = try tensor(random(C)),
            bias = try tensor(random(C))
        func outputs(fused: Bool) throws -> [[Float]] {
            let residual = try device.allocate(floats: N * C), out = try device.allocate(floats: N * C)
            let mean = try device.allocate(floats: N), rstd = try device.allocate(floats: N)
            if fused {
                try device.residualLayernormForward(
                    residual: residual, out: out, mean: mean, rstd: rstd, a: a, b: b, weight: weight, bias: bias,
                    N: N, C: C)
            } else {
                try device.add(out: residual, a: a, b: b)
                try device.layernormForward(
                    out: out, mean: mean, rstd: rstd, input: residual, weight: weight, bias: bias, N: N, C: C)
            }
            return try [residual, out, mean, rstd].map { try device.download($0) }
        }
        let fused = try outputs(fused: true), separate = try outputs(fused: false)
        for (x, y) in zip(fused, separate) { XCTAssertEqual(x.map(\.bitPattern), y.map(\.bitPattern)) }
    }

    func testLinearForwardIsMatmulBiasAndGeluBitForBit() throws {
        let N = 29, IC = 40, OC = 72
        let input = try tensor(random(N * IC)), weight = try tensor(random(IC * OC)), bias = try tensor(random(OC))
        let out = try device.allocate(floats: N * OC), gelu = try device.allocate(floats: N * OC)
        try device.linearForward(
            out: out, geluOut: gelu, input: input, weight: weight, bias: bias, N: N, inFeatures: IC, outFeatures: OC)
        let separate = try device.allocate(floats: N * OC)
        try device.matmul(
            c: separate, a: input, b: weight, M: N, N: OC, K: IC, transposeA: false, transposeB: false, beta: 0)
        // The bias and the GELU (baton_gelu.h, the kernels' formula) on the host.
        let biasValues = try device.download(bias)
        let withBias = try device.download(separate).enumerated().map { $0.element + biasValues[$0.offset % OC] }
        XCTAssertEqual(try device.download(out).map(\.bitPattern), withBias.map(\.bitPattern))
        XCTAssertEqual(try device.download(gelu).map(\.bitPattern), withBias.map { baton_gelu($0).bitPattern })
    }

    func testMatmulGeluBackwardIsMatmulAndGeluBackwardBitForBit() throws {
        let N = 29, IC = 40, OC = 72
        let dout = try tensor(random(N * OC)), weight = try tensor(random(IC * OC)), pre = try tensor(random(N * IC))
        let fused = try device.allocate(floats: N * IC)
        try device.matmulGeluBackward(
            dinput: fused, dout: dout, weight: weight, preGelu: pre, N: N, inFeatures: IC, outFeatures: OC)
        let product = try device.allocate(floats: N * IC)
        try device.matmul(
            c: product, a: dout, b: weight, M: N, N: IC, K: OC, transposeA: false, transposeB: true, beta: 0)
        // GELU's gradient (baton_gelu.h, the kernels' formula) on the host.
        let separate = zip(try device.download(pre), try device.download(product)).map { baton_gelu_backward($0, $1) }
        XCTAssertEqual(try device.download(fused).map(\.bitPattern), separate.map(\.bitPattern))
    }

    /// In bf16 a fused op rounds once, at its end: its outputs are the fp32 op's on bf16-rounded
    /// inputs (the bias too: it is read from the weights' bf16 copy), each rounded to bfloat16, the
    /// GELU taken of the unrounded pre-activation.
    func testFusedOpsRoundOnceAtTheEndInBF16() throws {
        func bf16(_ x: Float) -> Float {  // round to nearest even (finite values)
            let bits = x.bitPattern
            return Float(bitPattern: (bits &+ 0x7fff &+ ((bits >> 16) & 1)) & 0xffff_0000)
        }
        let N = 9, IC = 16, OC = 24
        let inputValues = random(N * IC), weightValues = random(IC * OC), biasValues = random(OC)
        func run(
            on device: Device, _ input: [Float], _ weight: [Float], _ bias: [Float]
        ) throws -> (out: [Float], gelu: [Float]) {
            func upload(_ values: [Float]) throws -> Tensor {
                let t = try device.allocate(activations: values.count)  // bf16 on the bf16 device: rounded here
                try device.upload(values, to: t)
                return t
            }
            let out = try device.allocate(activations: N * OC), gelu = try device.allocate(activations: N * OC)
            try device.linearForward(
                out: out, geluOut: gelu, input: try upload(input), weight: try upload(weight), bias: try upload(bias),
                N: N, inFeatures: IC, outFeatures: OC)
            return (try device.download(out), try device.download(gelu))
        }
        let lowered = Device.cpu(threads: 2)
        try lowered.setPrecision(.bf16)
        let fused = try run(on: lowered, inputValues, weightValues, biasValues)
        let reference = try run(on: device, inputValues.map(bf16), weightValues.map(bf16), biasValues.map(bf16))
        XCTAssertEqual(fused.out.map(\.bitPattern), reference.out.map(bf16).map(\.bitPattern))
        XCTAssertEqual(fused.gelu.map(\.bitPattern), reference.gelu.map(bf16).map(\.bitPattern))
    }

    func testEmbeddingGradientAddsEachTokensRowsInRowOrder() throws {
        let B = 3, T = 50, C = 40, V = 17
        let ids: [Int32] = (0..<(B * T)).map { _ in Int32(generator.next() % UInt64(V)) }
        let dout = random(B * T * C), dwteStart = random(V * C), dwpeStart = random(T * C)
        // The plain loop: every row in order, into its token's and its position's rows.
        var dwte = dwteStart, dwpe = dwpeStart
        for row in 0..<(B * T) {
            for c in 0..<C {
                dwte[Int(ids[row]) * C + c] += dout[row * C + c]
                dwpe[(row % T) * C + c] += dout[row * C + c]
            }
        }
        let tokens = try device.allocate(tokens: ids.count)
        try device.upload(tokens: ids, to: tokens)
        var buckets = try DeviceBuckets(device: device, rows: ids.count)
        try buckets.upload(try EmbeddingBuckets(tokens: ids, vocabularySize: V), on: device)
        let dwteOut = try tensor(dwteStart), dwpeOut = try tensor(dwpeStart)
        try device.encoderBackward(
            dwte: dwteOut, dwpe: dwpeOut, dout: try tensor(dout), tokens: tokens, buckets: buckets, B: B, T: T, C: C)
        XCTAssertEqual(try device.download(dwteOut).map(\.bitPattern), dwte.map(\.bitPattern))
        XCTAssertEqual(try device.download(dwpeOut).map(\.bitPattern), dwpe.map(\.bitPattern))
    }
}
