import CBatonABI
import CBatonCPU
import XCTest

@testable import Baton
@testable import BatonTestSupport

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
        let device = try Device(
            kind: .cuda, table: table, options: baton_context_options(device_index: 0, threads: 2, attention: 0))
        var test = SelfTest(device: device, reference: Device.cpu(threads: 1))
        return try test.opChecks(.small)
    }

    func assertOnlyFailing(_ prefix: String, _ rows: [SelfTest.Row], file: StaticString = #filePath, line: UInt = #line)
    {
        let failing = rows.filter { !$0.passed }.map(\.check)
        XCTAssertFalse(failing.isEmpty, "the harness missed the broken \(prefix)", file: file, line: line)
        XCTAssert(
            failing.allSatisfy { $0.hasPrefix(prefix) }, "only \(prefix) should fail, got \(failing)", file: file,
            line: line)
    }

    func testTheSameKernelsOnAnotherThreadCountPassEveryRow() throws {
        let rows = try rows(of: baton_cpu_get_table())
        XCTAssertEqual(rows.filter { !$0.passed }.map(\.check), [])
        XCTAssertGreaterThan(rows.count, 15)
    }

    func testAnOpThatSkipsItsLastElementFails() throws {
        // An add that leaves its last output untouched: the harness poisons outputs with NaN first.
        let table = brokenTable { $0.add = { ctx, out, a, b, n in cpuTable.add(ctx, out, a, b, n - 1) } }
        assertOnlyFailing("add", try rows(of: table))
    }

    func testAnOpThatSkipsItsFirstElementFails() throws {
        // An add that leaves output 0 untouched (its NaN poison), then fills the rest right: the
        // NaN must survive every later element's smaller error.
        let table = brokenTable { $0.add = { ctx, out, a, b, n in cpuTable.add(ctx, out! + 1, a! + 1, b! + 1, n - 1) } }
        assertOnlyFailing("add", try rows(of: table))
    }

    func testAnOpThatSkipsAMiddleElementFails() throws {
        // An add that leaves output n/2 untouched: elements before and after it are right.
        let table = brokenTable {
            $0.add = { ctx, out, a, b, n in
                let half = n / 2
                cpuTable.add(ctx, out, a, b, half)
                cpuTable.add(ctx, out! + Int(half) + 1, a! + Int(half) + 1, b! + Int(half) + 1, n - half - 1)
            }
        }
        assertOnlyFailing("add", try rows(of: table))
    }

    func testAnOpWithOneWrongElementFails() throws {
        // An add right everywhere but output n/2, doubled: a plain wrong value, no NaN.
        let table = brokenTable {
            $0.add = { ctx, out, a, b, n in
                cpuTable.add(ctx, out, a, b, n)
                out![Int(n / 2)] = out![Int(n / 2)] * 2 + 1
            }
        }
        assertOnlyFailing("add", try rows(of: table))
    }

    /// The reference [1, -2, 3, 4, -5] with element `index` replaced by `value`.
    func broken(at index: Int, _ value: Float) -> [Float] {
        var values: [Float] = [1, -2, 3, 4, -5]
        values[index] = value
        return values
    }

    func testRelativeErrorKeepsANaNOrAWrongValueWhereverItIs() {
        let reference: [Float] = [1, -2, 3, 4, -5]
        XCTAssertEqual(SelfTest.relativeError(reference, reference), 0)
        for index in [0, 2, 4] {  // first, middle, last
            XCTAssert(SelfTest.relativeError(broken(at: index, .nan), reference).isNaN, "NaN at \(index) lost")
            let row = SelfTest.Row(
                check: "x", error: SelfTest.relativeError(broken(at: index, .nan), reference), limit: 1)
            XCTAssertFalse(row.passed, "a NaN at \(index) passes its row")
            // 0.5 off where the scale is 5: a relative error of 0.1, wherever it is.
            XCTAssertEqual(
                SelfTest.relativeError(broken(at: index, reference[index] + 0.5), reference), 0.1, accuracy: 1e-7,
                "wrong value at \(index)")
        }
    }

    func testAssertCloseKeepsANaNOrAWrongValueWhereverItIs() {
        let reference: [Float] = [1, -2, 3, 4, -5]
        XCTAssertEqual(worstError(reference, reference).error, 0)
        for index in [0, 2, 4] {  // first, middle, last
            let nan = worstError(broken(at: index, .nan), reference)
            XCTAssert(nan.error.isNaN, "NaN at \(index) lost")
            XCTAssertEqual(nan.index, index)
            XCTAssertFalse(nan.error <= 1, "a NaN at \(index) passes assertClose's check")
            let wrong = worstError(broken(at: index, reference[index] + 0.5), reference)
            XCTAssertEqual(wrong.error, 0.5)
            XCTAssertEqual(wrong.index, index)
        }
    }

    /// `baton selftest` prints each row from onRow as it is measured, so a later check that hangs
    /// loses none: every row reaches onRow, in order, and a group that throws reports its failure.
    func testEveryRowIsReportedAsItIsMeasured() throws {
        let device = try Device(
            kind: .cuda, table: baton_cpu_get_table(),
            options: baton_context_options(device_index: 0, threads: 2, attention: 0))
        var test = SelfTest(device: device, reference: Device.cpu(threads: 1))
        var seen: [String] = []
        test.onRow = { seen.append($0.check) }
        let rows = try test.opChecks(.small)
        XCTAssertEqual(seen, rows.map(\.check))
        struct Hung: Error {}
        let failed = SelfTest.Row.guarded("group", report: { seen.append($0.check) }) { throw Hung() }
        XCTAssertEqual(seen.last, "group")
        XCTAssertFalse(failed[0].passed)
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
