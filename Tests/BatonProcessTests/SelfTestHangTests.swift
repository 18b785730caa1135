import XCTest

@testable import Baton
@testable import BatonTestSupport

/// `baton selftest` prints each row as it is measured: a check that hangs (as one stuck on a GPU
/// would; injected here after the fifth row, debug builds only) loses none of the rows before it.
final class SelfTestHangTests: XCTestCase {
    func testAHangingRowLeavesEveryEarlierRowInTheOutput() throws {
        let folder = try TestPaths.temporaryFolder("selftest-hang")
        defer { try? FileManager.default.removeItem(at: folder) }
        let output = folder.appendingPathComponent("out")
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let process = Process()
        process.executableURL = TestPaths.batonExecutable
        process.arguments = ["selftest", "--device", "cpu"]
        process.environment = ProcessInfo.processInfo.environment.merging(["BATON_DEBUG_SELFTEST_HANG_AFTER_ROWS": "5"])
        { $1 }
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = FileHandle.nullDevice
        try process.run()
        func rows() -> [String] {
            ((try? String(contentsOf: output, encoding: .utf8)) ?? "").split(separator: "\n").filter {
                $0.hasPrefix("row: ")
            }.map(String.init)
        }
        try waitFor(process: process, timeout: 120) { rows().count >= 5 }
        usleep(500_000)
        XCTAssert(process.isRunning, "the injected hang holds the selftest")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let printed = rows()
        XCTAssertEqual(printed.count, 5, printed.joined(separator: "\n"))
        XCTAssert(printed.allSatisfy { $0.hasSuffix("pass") }, printed.joined(separator: "\n"))
    }
}
