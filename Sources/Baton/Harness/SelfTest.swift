import Foundation

/// `baton selftest`: every op of a device against the CPU backend on random non-zero inputs (the
/// device's outputs poisoned with NaN first, so an op that skips an element is caught), then
/// training checks: parity over 20 steps, bitwise resume on the device, and resume across
/// backends. Built into the binary because GPU hosts have no Swift toolchain.
public struct SelfTest {
    public struct Row {
        public let check: String
        public let error: Double
        public let limit: Double
        /// Why the check could not run (the op threw), shown under the row.
        public var failure: String? = nil
        public var passed: Bool { failure == nil && error <= limit }  // NaN fails

        /// The rows `body` makes, or one failing row that says what it threw: one broken op must
        /// not hide the state of the others.
        /// The failing row is also handed to `report` (the rows `body` made before it threw were
        /// reported as each was measured).
        public static func guarded(
            _ check: String, report: (Row) -> Void = { _ in }, _ body: () throws -> [Row]
        ) -> [Row] {
            do { return try body() } catch {
                let row = Row(check: check, error: .infinity, limit: 0, failure: "\(error)")
                report(row)
                return [row]
            }
        }
    }

    let device: Device
    let reference: Device
    var generator = RandomGenerator(seed: 2024)
    /// Called with each row as soon as it is measured, before the checks after it run: `baton
    /// selftest` prints it then, so a check that hangs loses none of the rows before it.
    public var onRow: (Row) -> Void = { _ in }

    public init(device: Device, reference: Device = Device.cpu()) {
        self.device = device
        self.reference = reference
    }

    /// max |a - b| / max |b|: the error relative to the reference tensor's scale. NaN when any
    /// element's error is NaN (wherever it is: a later element must not replace it), so the row fails.
    static func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        guard a.count == b.count else { return .infinity }
        let scale = max(Double(b.map { abs($0) }.max() ?? 0), 1e-30)
        var worst = 0.0
        for (x, y) in zip(a, b) {
            let e = abs(Double(x) - Double(y))
            if e.isNaN { return .nan }
            worst = max(worst, e)
        }
        return worst / scale
    }

    mutating func random(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in Float(generator.nextNormal()) * scale }
    }

    /// Makes an op's input tensors from host values: float32 (`input(values)`) or activations,
    /// stored as the device's precision stores them (`input.activation(values)`: rounded to bf16
    /// in bf16, on both devices alike).
    struct Inputs {
        let device: Device
        func callAsFunction(_ values: [Float]) throws -> Tensor {
            try make(values, try device.allocate(floats: values.count))
        }
        func activation(_ values: [Float]) throws -> Tensor {
            try make(values, try device.allocate(activations: values.count))
        }
        private func make(_ values: [Float], _ tensor: Tensor) throws -> Tensor {
            try device.upload(values, to: tensor)
            return tensor
        }
    }

    /// Makes an op's output tensors, float32 or activations: holding `start` (an op that
    /// accumulates), else poisoned with NaN on the device under test.
    struct Outputs {
        let device: Device
        let poison: Bool
        func callAsFunction(_ count: Int, _ start: [Float]?) throws -> Tensor {
            try make(try device.allocate(floats: count), start)
        }
        func activation(_ count: Int, _ start: [Float]?) throws -> Tensor {
            try make(try device.allocate(activations: count), start)
        }
        private func make(_ tensor: Tensor, _ start: [Float]?) throws -> Tensor {
            if let start {
                try device.upload(start, to: tensor)
            } else if poison {
                try device.upload([Float](repeating: .nan, count: tensor.count), to: tensor)
            }
            return tensor
        }
    }

    /// Runs `op` on both devices with the same host inputs and compares the listed outputs.
    /// `op` gets the device, its Inputs and its Outputs.
    func compare(_ name: String, limit: Double, _ op: (Device, Inputs, Outputs) throws -> [Tensor]) throws -> Row {
        func run(on target: Device, poison: Bool) throws -> [[Float]] {
            try op(target, Inputs(device: target), Outputs(device: target, poison: poison)).map {
                try target.download($0)
            }
        }
        let expected = try run(on: reference, poison: false)
        let actual: [[Float]]
        do { actual = try run(on: device, poison: true) } catch {
            return reported(Row(check: name, error: .infinity, limit: limit, failure: "\(error)"))
        }
        let error = zip(actual, expected).map { SelfTest.relativeError($0, $1) }
        return reported(Row(check: name, error: SelfTest.worst(error), limit: limit))
    }

    /// The largest of `errors`; NaN if any is (Array.max() would drop a NaN that is not first),
    /// infinite if there are none.
    static func worst(_ errors: [Double]) -> Double {
        if errors.isEmpty { return .infinity }
        return errors.contains { $0.isNaN } ? .nan : errors.max()!
    }

    /// `row`, handed to onRow first.
    func reported(_ row: Row) -> Row {
        onRow(row)
        return row
    }

    /// The NCCL communicator on this GPU in a job of one rank: ncclSend/ncclRecv to itself and
    /// ncclAllReduce, each of which must give back exactly what it was given. (Exchanges between
    /// two GPUs need two GPUs: not run here.)
    public mutating func ncclChecks() throws -> [Row] {
        let nccl = try DeviceCommunicator.join(over: .single(), deviceIndex: 0, timeoutSeconds: 60)
        defer { nccl.finalize() }
        let values = random(1 << 20)
        let send = try device.allocate(floats: values.count), receive = try device.allocate(floats: values.count)
        try device.upload(values, to: send)
        try device.fill(receive, with: .nan)
        try nccl.exchange(send, into: receive, with: 0)
        let exchanged = SelfTest.relativeError(try device.download(receive), values)
        try nccl.allreduceSum(send)
        let reduced = SelfTest.relativeError(try device.download(send), values)
        return [
            reported(Row(check: "nccl \(nccl.version): send/recv to itself", error: exchanged, limit: 0)),
            reported(Row(check: "nccl \(nccl.version): all-reduce at world size 1", error: reduced, limit: 0)),
        ]
    }

    /// Bytes of activations (everything Activations allocates) for GPT-2 124M at batch 32, T 1024,
    /// stored as `element` (float32, or bf16 as a bf16 run stores them) at a recompute level: with
    /// this device's attention buffers, and with the scores kept as the CPU keeps them.
    public func activationMemory(
        B: Int = 32, T: Int = 1024, element: ElementType = .float32, recompute: RecomputeLevel = .off
    )
        -> (device: Int, deviceAttention: Int, scoresKept: Int, scoresAttention: Int)
    {
        let config = GPTConfig(contextLength: 1024, vocabularySize: 50257, layers: 12, heads: 12, channels: 768)
        let sizes = device.attentionSizes(B: B, T: T, C: 768, NH: 12, KV: 12)
        // The materialized kernels' buffers.
        let scores = (saved: B * 12 * T * T, scratch: B * 12 * T * T + 7 * B * T * 768)
        func bytes(_ saved: Int, _ scratch: Int) -> Int {
            Activations.byteCount(
                config: config, B: B, T: T, attentionSaved: saved, attentionScratch: scratch, element: element,
                recompute: recompute)
        }
        return (
            bytes(sizes.saved, sizes.scratch), 4 * (12 * sizes.saved + sizes.scratch),
            bytes(scores.saved, scores.scratch), 4 * (12 * scores.saved + scores.scratch)
        )
    }

    /// The sizes the op checks run at. One small; one big enough that every loop in the kernels
    /// goes round more than once (T past two warps and not a multiple of the attention's 32-row
    /// tiles, 12 heads of 64 as GPT-2's, V past two blocks of 512 threads, rows past the
    /// column-sum chunks, the vector past the global norm's grid); and heads of 96 channels,
    /// wider than flash attention takes on a GPU (it keeps the scores there), with B x T x C not a
    /// multiple of 256, so a kernel's last block has threads past the end (an off-by-one shows).
    public struct OpShape: Sendable {
        public let label: String
        public let B, T, C, NH, V, vector: Int
        public static let small = OpShape(label: "small", B: 2, T: 24, C: 48, NH: 4, V: 67, vector: 5000)
        public static let loops = OpShape(label: "loops", B: 2, T: 70, C: 768, NH: 12, V: 1100, vector: 300_000)
        public static let wideHeads = OpShape(label: "wide heads", B: 2, T: 37, C: 192, NH: 2, V: 67, vector: 5000)
        public static let all = [small, loops, wideHeads]
        public var description: String { "\(label): B \(B), T \(T), C \(C), heads \(NH), V \(V), vectors \(vector)" }
    }

    /// The matmul's limit per precision, against the CPU twin (the same roundings at the same
    /// points): fp32 as every reduction; tf32 5e-3, since a GPU may round its inputs otherwise than
    /// to nearest even (truncation errs by up to 2^-10 of each input, ~1e-3 of a product); bf16
    /// 1e-2, since a fresh output is rounded to 8 significant bits after sums whose order differs,
    /// so one element near the tensor's largest can land one bf16 step (2^-8 = 3.9e-3) away, and
    /// the inputs' rounding may differ as for tf32. The GPU's first run measures how close they come.
    public static let matmulLimit: [Precision: Double] = [.fp32: 1e-4, .tf32: 5e-3, .bf16: 1e-2]

    /// Attention's limit per precision: float32 in fp32; in tf32 and bf16 the GPU's tensor-core
    /// kernels and the CPU's twin round q, k, v, dO, the probabilities and dS at the same points,
    /// but a GPU sums the scores in another order, so a rounded probability or dS can land one step
    /// of the precision away, as a matmul's output can: the matmul's limits (measured on the
    /// emulator, which sums as the CPU: 1e-5 and below).
    public static let attentionLimit: [Precision: Double] = [.fp32: 1e-4, .tf32: 5e-3, .bf16: 1e-2]

    /// The limit of an op whose output is stored as activations: its float32 limit, and in bf16 one
    /// step of bfloat16 (2^-8 of a value: 3.9e-3), since an output that the two devices compute a
    /// rounding error apart (a GPU's rsqrtf and sums in another order) can land on either side of
    /// a bf16 rounding boundary; 1e-2 as the matmul's.
    func storedLimit(_ fp32Limit: Double) -> Double { device.precision == .bf16 ? max(fp32Limit, 1e-2) : fp32Limit }
}
