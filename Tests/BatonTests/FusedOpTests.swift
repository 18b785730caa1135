import XCTest
@testable import Baton

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

    func testBucketsGroupRowsByTokenInRowOrder() {
        let buckets = EmbeddingBuckets(tokens: [4, 1, 4, 0, 1, 4], vocabularySize: 6)
        XCTAssertEqual(buckets.rows, [3, 1, 4, 0, 2, 5])  // token 0: row 3; token 1: rows 1, 4; token 4: rows 0, 2, 5
        XCTAssertEqual(buckets.starts, [0, 1, 3, 6])
        XCTAssertEqual(buckets.count, 3)
        let empty = EmbeddingBuckets(tokens: [], vocabularySize: 3)
        XCTAssertEqual(empty.count, 0)
        XCTAssertEqual(empty.starts, [0])
    }

    func testResidualLayernormIsTheTwoOpsBitForBit() throws {
        let N = 37, C = 96
        let a = try tensor(random(N * C)), b = try tensor(random(N * C)), weight = try tensor(random(C)), bias = try tensor(random(C))
        func outputs(fused: Bool) throws -> [[Float]] {
            let residual = try device.allocate(floats: N * C), out = try device.allocate(floats: N * C)
            let mean = try device.allocate(floats: N), rstd = try device.allocate(floats: N)
            if fused {
                try device.residualLayernormForward(residual: residual, out: out, mean: mean, rstd: rstd, a: a, b: b, weight: weight, bias: bias,
                                                    N: N, C: C)
            } else {
                try device.residualForward(out: residual, a: a, b: b)
                try device.layernormForward(out: out, mean: mean, rstd: rstd, input: residual, weight: weight, bias: bias, N: N, C: C)
            }
            return try [residual, out, mean, rstd].map { try device.download($0) }
        }
        let fused = try outputs(fused: true), separate = try outputs(fused: false)
        for (x, y) in zip(fused, separate) { XCTAssertEqual(x.map(\.bitPattern), y.map(\.bitPattern)) }
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
        try buckets.upload(EmbeddingBuckets(tokens: ids, vocabularySize: V), on: device)
        let dwteOut = try tensor(dwteStart), dwpeOut = try tensor(dwpeStart)
        try device.encoderBackward(dwte: dwteOut, dwpe: dwpeOut, dout: try tensor(dout), tokens: tokens, buckets: buckets, B: B, T: T, C: C)
        XCTAssertEqual(try device.download(dwteOut).map(\.bitPattern), dwte.map(\.bitPattern))
        XCTAssertEqual(try device.download(dwpeOut).map(\.bitPattern), dwpe.map(\.bitPattern))
    }
}
