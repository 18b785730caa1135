import XCTest

@testable import Baton

/// Grouped-query attention is, by definition, multi-head attention over key/value heads repeated
/// for their groups of query heads (transformers' `repeat_kv`): on the CPU in fp32 the attention
/// ops with KV key/value heads must give the output of the multi-head ops on the repeated heads,
/// and as each key/value head's gradients the sums, over its group in head order, of the repeated
/// heads' gradients.
final class GroupedAttentionTests: XCTestCase {
    let B = 2, T = 45, C = 64, NH = 8
    var HS: Int { C / NH }

    func random(_ count: Int, _ generator: inout RandomGenerator) -> [Float] {
        (0..<count).map { _ in Float(generator.nextNormal()) }
    }

    /// out and dqkv of the attention ops on `device` with KV key/value heads.
    func attention(_ device: Device, qkv: [Float], dout: [Float], KV: Int) throws -> (out: [Float], dqkv: [Float]) {
        let N = B * T, width = C + 2 * KV * HS
        let sizes = device.attentionSizes(B: B, T: T, C: C, NH: NH, KV: KV)
        let input = try device.allocate(floats: N * width), gradient = try device.allocate(floats: N * C)
        try device.upload(qkv, to: input)
        try device.upload(dout, to: gradient)
        let out = try device.allocate(floats: N * C), saved = try device.allocate(floats: sizes.saved)
        let scratch = try device.allocate(floats: sizes.scratch), dqkv = try device.allocate(floats: N * width)
        try device.fill(dqkv, with: .nan)  // every element must be written
        try device.attentionForward(
            out: out, saved: saved, qkv: input, scratch: scratch, B: B, T: T, C: C, NH: NH, KV: KV)
        try device.attentionBackward(
            dqkv: dqkv, scratch: scratch, dout: gradient, qkv: input, out: out, saved: saved, B: B, T: T, C: C, NH: NH,
            KV: KV)
        return (try device.download(out), try device.download(dqkv))
    }

    func testGroupedAttentionIsMultiHeadAttentionOnRepeatedHeads() throws {
        let device = Device.cpu(threads: 2)
        let N = B * T
        for KV in [4, 2, 1] {
            let G = NH / KV, width = C + 2 * KV * HS
            var generator = RandomGenerator(seed: UInt64(KV))
            let grouped = random(N * width, &generator), dout = random(N * C, &generator)
            // The repeated layout: [q | k of head h / G for each h | v likewise], as repeat_kv made it.
            var repeated = [Float](repeating: 0, count: N * 3 * C)
            for n in 0..<N {
                for c in 0..<C { repeated[n * 3 * C + c] = grouped[n * width + c] }
                for part in 1...2 {
                    let source = n * width + C + (part - 1) * KV * HS
                    for h in 0..<NH {
                        for d in 0..<HS {
                            repeated[n * 3 * C + part * C + h * HS + d] = grouped[source + (h / G) * HS + d]
                        }
                    }
                }
            }
            let native = try attention(device, qkv: grouped, dout: dout, KV: KV)
            let reference = try attention(device, qkv: repeated, dout: dout, KV: NH)
            XCTAssertLessThanOrEqual(
                SelfTest.relativeError(native.out, reference.out), 1e-6, "KV \(KV): the output")
            // dq as the repeated heads'; each key/value head's dk and dv the sum of its group's, in head order.
            var expected = [Float](repeating: 0, count: N * width)
            for n in 0..<N {
                for c in 0..<C { expected[n * width + c] = reference.dqkv[n * 3 * C + c] }
                for part in 1...2 {
                    for kv in 0..<KV {
                        for d in 0..<HS {
                            var sum: Float = 0
                            for g in 0..<G { sum += reference.dqkv[n * 3 * C + part * C + (kv * G + g) * HS + d] }
                            expected[n * width + C + ((part - 1) * KV + kv) * HS + d] = sum
                        }
                    }
                }
            }
            XCTAssertFalse(native.dqkv.contains { $0.isNaN }, "KV \(KV): every gradient written")
            XCTAssertEqual(native.dqkv, expected, "KV \(KV): dq, and dk and dv summed over each group in head order")
            // The bits do not depend on the threads (tasks are (batch, key/value head) pairs).
            let alone = try attention(Device.cpu(threads: 1), qkv: grouped, dout: dout, KV: KV)
            let three = try attention(Device.cpu(threads: 3), qkv: grouped, dout: dout, KV: KV)
            XCTAssertEqual(alone.out.map(\.bitPattern), native.out.map(\.bitPattern), "KV \(KV): 1 thread")
            XCTAssertEqual(alone.dqkv.map(\.bitPattern), native.dqkv.map(\.bitPattern), "KV \(KV): 1 thread")
            XCTAssertEqual(three.dqkv.map(\.bitPattern), native.dqkv.map(\.bitPattern), "KV \(KV): 3 threads")
        }
    }
}
