import CBatonCPU
import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The matmul precisions on the CPU, the GPU's twin: rounding to bfloat16 bit for bit as PyTorch
/// does it, TF32 rounding by hand-checked cases, the bf16 matmul against a naive product of
/// rounded inputs, and bf16 training that resumes bit for bit and continues in fp32.
final class PrecisionTests: XCTestCase {
    func bits(_ x: Float) -> UInt32 { x.bitPattern }

    func testBF16RoundingMatchesPyTorchBitForBit() throws {
        struct Fixture: Decodable { let torch: String; let input_bits: [UInt32]; let bf16_bits: [UInt32] }
        let fixture = try JSONDecoder().decode(
            Fixture.self, from: Data(contentsOf: TestPaths.fixtures.appendingPathComponent("bf16_rounding.json")))
        XCTAssertEqual(fixture.input_bits.count, 2025)
        var nans = 0
        for (input, expected) in zip(fixture.input_bits, fixture.bf16_bits) {
            let rounded = baton_round_bf16(Float(bitPattern: input))
            if Float(bitPattern: expected).isNaN {
                // PyTorch makes every NaN its one canonical NaN; Baton keeps the payload's top bits. Both are NaN.
                XCTAssert(rounded.isNaN, "NaN \(String(input, radix: 16)) must stay NaN")
                nans += 1
            } else {
                XCTAssertEqual(
                    bits(rounded), expected, "bf16 of 0x\(String(input, radix: 16)) (torch \(fixture.torch))")
            }
        }
        XCTAssertGreaterThan(nans, 1, "the fixture holds NaNs")
    }

    /// Attention in bf16 and tf32 on the CPU is the tensor-core flash kernels' twin: its products
    /// take operands of that precision, so it differs from fp32 attention, by about the precision;
    /// heads wider than the flash kernels take (float32 scores on a GPU too) keep float32 products,
    /// on bf16 activations in bf16.
    func testBF16AttentionRoundsItsProductsAndStaysClose() throws {
        func run(
            _ precision: Precision, C: Int, NH: Int, roundInputs: Bool = false
        ) throws -> (out: [Float], dqkv: [Float]) {
            let device = Device.cpu(threads: 2)
            try device.setPrecision(precision)
            let B = 2, T = 45, N = B * T
            var generator = RandomGenerator(seed: 5)
            func tensor(_ count: Int) throws -> Tensor {
                let t = try device.allocate(activations: count)
                try device.upload(
                    (0..<count).map { _ in
                        let x = Float(generator.nextNormal())
                        return roundInputs ? baton_round_bf16(x) : x
                    }, to: t)
                return t
            }
            let sizes = device.attentionSizes(B: B, T: T, C: C, NH: NH, KV: NH)
            let qkv = try tensor(N * 3 * C), dout = try tensor(N * C)
            let out = try device.allocate(activations: N * C), saved = try device.allocate(floats: sizes.saved)
            let scratch = try device.allocate(floats: sizes.scratch), dqkv = try device.allocate(activations: N * 3 * C)
            try device.attentionForward(
                out: out, saved: saved, qkv: qkv, scratch: scratch, B: B, T: T, C: C, NH: NH, KV: NH)
            try device.attentionBackward(
                dqkv: dqkv, scratch: scratch, dout: dout, qkv: qkv, out: out, saved: saved, B: B, T: T, C: C, NH: NH,
                KV: NH)
            return (try device.download(out), try device.download(dqkv))
        }
        let fp32 = try run(.fp32, C: 128, NH: 4)
        for (precision, low, high) in [(Precision.bf16, 1e-5, 2e-2), (.tf32, 1e-6, 5e-3)] {
            let rounded = try run(precision, C: 128, NH: 4)
            for (name, a, b) in [("out", rounded.out, fp32.out), ("dqkv", rounded.dqkv, fp32.dqkv)] {
                let error = SelfTest.relativeError(a, b)
                XCTAssertGreaterThan(
                    error, low, "\(precision) attention's \(name) must differ from fp32's (its operands are rounded)")
                XCTAssertLessThan(error, high, "\(precision) attention's \(name) stays within its precision of fp32's")
            }
        }
        // Heads of 96 channels: the bf16 output is fp32 attention's on the same bf16 inputs, rounded once.
        let wide32 = try run(.fp32, C: 192, NH: 2, roundInputs: true), wide16 = try run(.bf16, C: 192, NH: 2)
        XCTAssertEqual(wide16.out.map(\.bitPattern), wide32.out.map { baton_round_bf16($0).bitPattern })
        XCTAssertLessThan(SelfTest.relativeError(wide16.dqkv, wide32.dqkv), 1e-2)
    }

    func testTF32RoundingToNearestEven() {
        let ulp = Float(1) / 1024  // 10 mantissa bits
        XCTAssertEqual(baton_round_tf32(1 + ulp / 2), 1)  // a tie goes to the even neighbour
        XCTAssertEqual(baton_round_tf32(1 + 3 * ulp / 2), 1 + 2 * ulp)  // ... here upwards
        XCTAssertEqual(baton_round_tf32(1 + ulp / 2 + ulp / 64), 1 + ulp)  // past the tie
        XCTAssertEqual(baton_round_tf32(2 - ulp / 4), 2)  // a carry into the exponent
        XCTAssertEqual(baton_round_tf32(.greatestFiniteMagnitude), .infinity)
        XCTAssertEqual(baton_round_tf32(-.infinity), -.infinity)
        XCTAssert(baton_round_tf32(.nan).isNaN)
        XCTAssertEqual(bits(baton_round_tf32(-0.0)), bits(-0.0))
        XCTAssertEqual(bits(baton_round_tf32(0.1)) & 0x1fff, 0, "13 low bits dropped")
    }

    /// C = op(A) op(B) in bf16: the rounded inputs' products summed (in double here, in float32
    /// there), and a fresh output rounded to bfloat16; an accumulated one left in float32.
    func testBF16MatmulIsTheProductOfRoundedInputs() throws {
        let device = Device.cpu(threads: 2)
        try device.setPrecision(.bf16)
        var generator = RandomGenerator(seed: 5)
        let M = 37, N = 29, K = 53
        let a = (0..<(M * K)).map { _ in Float(generator.nextNormal()) },
            b = (0..<(K * N)).map { _ in Float(generator.nextNormal()) }
        // Stored as bf16.
        let ta = try device.allocate(activations: a.count), tb = try device.allocate(activations: b.count)
        let tc = try device.allocate(activations: M * N)
        try device.upload(a, to: ta)
        try device.upload(b, to: tb)
        var exact = [Double](repeating: 0, count: M * N)
        for i in 0..<M {
            for j in 0..<N {
                for k in 0..<K {
                    exact[i * N + j] += Double(baton_round_bf16(a[i * K + k])) * Double(baton_round_bf16(b[k * N + j]))
                }
            }
        }
        try device.matmul(c: tc, a: ta, b: tb, M: M, N: N, K: K, transposeA: false, transposeB: false, beta: 0)
        let fresh = try device.download(tc)
        for (value, reference) in zip(fresh, exact) {
            XCTAssertEqual(bits(value) & 0xffff, 0, "a fresh bf16 output is rounded to bfloat16")
            XCTAssertEqual(Double(value), reference, accuracy: abs(reference) / 128 + 1e-5, "within one bf16 step")
        }
        let start = (0..<(M * N)).map { _ in Float(generator.nextNormal()) }
        let gradient = try device.allocate(floats: M * N)
        try device.upload(start, to: gradient)
        try device.matmul(c: gradient, a: ta, b: tb, M: M, N: N, K: K, transposeA: false, transposeB: false, beta: 1)
        let accumulated = try device.download(gradient)
        XCTAssert(accumulated.contains { bits($0) & 0xffff != 0 }, "an accumulated output stays float32")
        for i in 0..<(M * N) {
            XCTAssertEqual(Double(accumulated[i]), Double(start[i]) + exact[i], accuracy: 1e-4 * (1 + abs(exact[i])))
        }
        // fp32 again: float32 activations, inputs no longer rounded.
        try device.setPrecision(.fp32)
        let fa = try device.allocate(activations: a.count), fb = try device.allocate(activations: b.count)
        try device.upload(a, to: fa)
        try device.upload(b, to: fb)
        try device.matmul(c: gradient, a: fa, b: fb, M: M, N: N, K: K, transposeA: false, transposeB: false, beta: 0)
        XCTAssertNotEqual(try device.download(gradient), fresh)
    }

    /// A bf16 run on the CPU: stopped and resumed, it ends with the uninterrupted run's bytes; it
    /// trains otherwise than fp32 (the mode acts) but close to it; its checkpoint goes on in fp32
    /// with a notice.
    func testBF16TrainingResumesBitwiseAndContinuesInFP32() throws {
        let folder = try TestPaths.temporaryFolder("bf16")
        defer { try? FileManager.default.removeItem(at: folder) }
        let common = [
            "train", "--layers", "2", "--heads", "2", "--embd", "32", "--seq-len", "32", "--batch", "4", "--steps",
            "12",
            "--eval-every", "0", "--eval-batches", "2", "--save-every", "0", "--threads", "2",
        ]
        func run(_ name: String, _ extra: [String]) throws -> ProcessResult {
            let result = try runBaton(common + ["--out", folder.appendingPathComponent(name).path] + extra)
            XCTAssertEqual(result.status, 0, result.stderr)
            return result
        }
        func model(_ name: String) throws -> Data {
            try Data(
                contentsOf: CheckpointStore(runFolder: folder.appendingPathComponent(name)).url(step: 12)
                    .appendingPathComponent(CheckpointStore.modelFile))
        }
        let straight = try run("straight", ["--precision", "bf16"])
        XCTAssert(straight.stdout.contains("precision: bf16"), straight.stdout)
        _ = try run("stopped", ["--precision", "bf16", "--stop-at", "5"])
        _ = try run("stopped", ["--resume", "auto"])  // the precision comes from the checkpoint's config
        XCTAssert(
            try model("stopped") == model("straight"), "a bf16 run resumed must end with the uninterrupted run's bytes")
        _ = try run("fp32", [])
        XCTAssert(try model("fp32") != model("straight"), "bf16 must change the run")
        let metrics = { (name: String) in
            try MetricsLog.read(folder.appendingPathComponent(name).appendingPathComponent("metrics.jsonl")).last!.loss
        }
        XCTAssertEqual(try metrics("straight"), try metrics("fp32"), accuracy: 0.05, "bf16 trains close to fp32")
        _ = try run("switched", ["--precision", "bf16", "--stop-at", "6"])
        let switched = try run("switched", ["--resume", "auto", "--precision", "fp32"])
        XCTAssert(switched.stdout.contains("resume: precision changed: bf16 -> fp32"), switched.stdout)
        XCTAssertFalse(switched.stdout.contains("precision: bf16"), switched.stdout)
    }
}
