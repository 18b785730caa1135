import Baton
import Foundation

let selftestSpec = CommandSpec(
    name: "selftest",
    summary:
        "Check a backend against the CPU reference: every op, then training parity, resume on the device, and "
        + "resume across backends. Run it on every new GPU host.",
    usage: "baton selftest [--device cuda|cpu]",
    options: [Option(name: "--device", placeholder: "cuda|cpu", help: "the backend to check (default cuda)")])

func selftestCommand(_ arguments: [String]) throws {
    guard let parsed = try selftestSpec.parse(arguments) else { return }
    let name = parsed.string("--device") ?? "cuda"
    guard let request = DeviceRequest(rawValue: name), request != .auto else {
        throw UsageError("baton selftest: --device expects cuda or cpu, got '\(name)'")
    }
    let device = try DeviceSelection.open(request, threads: 0, log: { _ in })
    say("selftest: \(device.summary) against the cpu backend")
    var test = SelfTest(device: device)
    // Each row as soon as it is measured (a check that hangs loses none before it); the table
    // with every row comes at the end.
    func line(_ row: SelfTest.Row, width: Int) -> String {
        row.check.padding(toLength: max(width, row.check.count), withPad: " ", startingAt: 0) + "  "
            + String(format: "%14.3e %10.0e", row.error, row.limit) + "  " + (row.passed ? "pass" : "FAIL")
    }
    #if DEBUG
    // Debug builds, for the tests: hang for good after this many rows, as a check stuck on a GPU would.
    let hangAfter = ProcessInfo.processInfo.environment["BATON_DEBUG_SELFTEST_HANG_AFTER_ROWS"].flatMap { Int($0) }
    #else
    let hangAfter: Int? = nil
    #endif
    var reported = 0
    let live: (SelfTest.Row) -> Void = { row in
        say("row: " + line(row, width: 60))
        if let failure = row.failure { say("    \(failure)") }
        reported += 1
        if reported == hangAfter { while true { sleep(60) } }
    }
    test.onRow = live
    let folder = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("baton-selftest-\(getpid())")
    defer { try? FileManager.default.removeItem(at: folder) }
    for shape in SelfTest.OpShape.all { say("ops at \(shape.description)") }
    var rows: [SelfTest.Row] = []
    for shape in SelfTest.OpShape.all {
        rows += SelfTest.Row.guarded("ops [\(shape.label)]", report: live) { try test.opChecks(shape) }
    }
    // Each lower precision against the CPU's twin of it (the same roundings at the same points), at
    // two shapes: the small one and the one that makes every loop go round more than once.
    for precision in [Precision.tf32, .bf16] {
        for shape in [SelfTest.OpShape.small, .loops] {
            rows += SelfTest.Row.guarded("ops [\(shape.label), \(precision.rawValue)]", report: live) {
                try test.opChecks(shape, precision: precision)
            }
        }
    }
    for precision in Precision.allCases {
        rows += SelfTest.Row.guarded("training checks [\(precision.rawValue)]", report: live) {
            try test.trainingChecks(folder: folder.appendingPathComponent(precision.rawValue), precision: precision)
        }
    }
    // The Llama family's blocks, in fp32 and in bf16 (which stores every activation rounded).
    for precision in [Precision.fp32, .bf16] {
        rows += SelfTest.Row.guarded("training checks [\(precision.rawValue), llama]", report: live) {
            try test.trainingChecks(
                folder: folder.appendingPathComponent("llama-" + precision.rawValue), precision: precision,
                architecture: .llama)
        }
    }
    // GPU ranks reduce through NCCL where the NCCL communicator was built beside the backend.
    if device.kind == .cuda {
        if FileManager.default.fileExists(atPath: DeviceCommunicator.candidatePath) {
            rows += SelfTest.Row.guarded("nccl", report: live) { try test.ncclChecks() }
        } else {
            say("nccl: skipped: no \(DeviceCommunicator.candidatePath) (cmake builds it where it finds nccl.h)")
        }
    }
    let memory = test.activationMemory()
    func gigabytes(_ bytes: Int) -> String { String(format: "%.2f GB", Double(bytes) / 1e9) }
    say(
        "memory: activations of GPT-2 124M at batch 32, T 1024 on this device: \(gigabytes(memory.device)) "
            + "(attention: \(gigabytes(memory.deviceAttention))); "
            + "with the T x T scores kept: \(gigabytes(memory.scoresKept)) (attention: "
            + "\(gigabytes(memory.scoresAttention)))"
    )
    let bf16Memory = test.activationMemory(element: .bfloat16)
    say(
        "memory: the same with bf16 activations (a bf16 run): \(gigabytes(bf16Memory.device)); with the scores "
            + "kept: \(gigabytes(bf16Memory.scoresKept))"
    )
    func recomputed(_ element: ElementType) -> String {
        [RecomputeLevel.activation, .activationAndNorms].map {
            gigabytes(test.activationMemory(element: element, recompute: $0).device)
        }.joined(separator: " and ")
    }
    say("memory: the same at --recompute 1 and 2: \(recomputed(.float32)); in bf16: \(recomputed(.bfloat16))")
    say(
        "memory: this selftest allocated \(device.allocationCount) buffers, \(gigabytes(device.allocatedBytes)) on "
            + "the device"
    )
    let width = rows.map(\.check.count).max() ?? 10
    say("check".padding(toLength: width, withPad: " ", startingAt: 0) + "   max rel error      limit  result")
    for row in rows {
        say(line(row, width: width))
        if let failure = row.failure { say("    \(failure)") }
    }
    let failed = rows.filter { !$0.passed }.count
    say("selftest: \(rows.count - failed) passed, \(failed) failed")
    if failed > 0 { throw BatonError("selftest: \(failed) of \(rows.count) checks failed on \(device.kind.rawValue)") }
}
