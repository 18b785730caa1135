import CBatonABI
import CBatonCPU
import XCTest
@testable import Baton

/// The CPU backend's table with one op swapped for a broken one. The replacements are C function
/// pointers, so they reach the real kernels through this global rather than a capture.
nonisolated(unsafe) private let cpuTable = baton_cpu_get_table()!.pointee

private func brokenTable(_ change: (inout baton_backend_table) -> Void) -> UnsafePointer<baton_backend_table> {
    let table = UnsafeMutablePointer<baton_backend_table>.allocate(capacity: 1)
    table.initialize(to: cpuTable)
    change(&table.pointee)
    return UnsafePointer(table)
}

/// `baton selftest` compares a device with the CPU reference. These hand it devices that are
/// wrong on purpose, through the same Device type and table a GPU uses, and require the harness to
/// fail exactly the broken op's rows and pass the others.
final class SelfTestHarnessTests: XCTestCase {
    func rows(of table: UnsafePointer<baton_backend_table>) throws -> [SelfTest.Row] {
        let device = try Device(kind: .cuda, table: table, options: baton_context_options(device_index: 0, threads: 2))
        var test = SelfTest(device: device, reference: Device.cpu(threads: 1))
        return try test.opChecks(.small)
    }

    func assertOnlyFailing(_ prefix: String, _ rows: [SelfTest.Row], file: StaticString = #filePath, line: UInt = #line) {
        let failing = rows.filter { !$0.passed }.map(\.check)
        XCTAssertFalse(failing.isEmpty, "the harness missed the broken \(prefix)", file: file, line: line)
        XCTAssert(failing.allSatisfy { $0.hasPrefix(prefix) }, "only \(prefix) should fail, got \(failing)", file: file, line: line)
    }

    func testTheSameKernelsOnAnotherThreadCountPassEveryRow() throws {
        let rows = try rows(of: baton_cpu_get_table())
        XCTAssertEqual(rows.filter { !$0.passed }.map(\.check), [])
        XCTAssertGreaterThan(rows.count, 15)
    }

    func testAnOpThatSkipsItsLastElementFails() throws {
        // GELU that leaves its last output untouched: the harness poisons outputs with NaN first.
        let table = brokenTable { $0.gelu_forward = { ctx, out, inp, n in cpuTable.gelu_forward(ctx, out, inp, n - 1) } }
        assertOnlyFailing("gelu_forward", try rows(of: table))
    }

    func testAnOpOffByARoundingErrorFails() throws {
        // A matmul whose result is 1e-3 too large (relative): above the 1e-4 limit.
        let table = brokenTable {
            $0.matmul = { ctx, c, a, b, M, N, K, ta, tb, beta in
                cpuTable.matmul(ctx, c, a, b, M, N, K, ta, tb, beta)
                let floats = c!.assumingMemoryBound(to: Float.self)  // fp32: every output float32
                for i in 0..<Int(M * N) { floats[i] *= 1.001 }
            }
        }
        assertOnlyFailing("matmul", try rows(of: table))
    }
}
