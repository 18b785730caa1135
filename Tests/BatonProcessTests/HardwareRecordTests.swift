import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// Each checkpoint records the hardware that computed it; a resume on hardware whose bits differ
/// (here: another OpenBLAS core, chosen with OPENBLAS_CORETYPE) says so once, and on the same
/// hardware says nothing.
final class HardwareRecordTests: TinyRunTestCase {
    var common: [String] {
        tinyModel + onCPU + ["--batch", "4", "--steps", "6", "--log-every", "100", "--eval-every", "0"]
    }

    /// The device line and the record name OpenBLAS's version and the core its kernels run on.
    func testTheCPURecordNamesTheBLASCoreAndTheMachine() {
        let record = Device.cpu(threads: 1).hardware
        XCTAssertEqual(record.backend, "cpu")
        XCTAssert(record.blas?.hasPrefix("OpenBLAS 0.") == true, "\(record)")
        XCTAssertFalse(record.cpu.isEmpty)
        #if arch(x86_64)
        XCTAssert(record.isa.hasPrefix("x86_64 "), record.isa)
        #elseif arch(arm64)
        XCTAssert(record.isa.hasPrefix("aarch64 "), record.isa)
        #endif
        XCTAssertNil(record.gpu)
    }

    func testAResumeOnAnotherBLASCoreSaysItsBitsWillDiffer() throws {
        #if !arch(x86_64)
        throw XCTSkip("skipped: OPENBLAS_CORETYPE names x86-64 cores; this test picks two of them")
        #else
        let run = folder.appendingPathComponent("run").path
        let first = try runBaton(
            ["train", "--out", run, "--stop-at", "3"] + common, environment: ["OPENBLAS_CORETYPE": "Sandybridge"])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssert(
            first.stdout.contains("device: cpu (2 threads, OpenBLAS ") && first.stdout.contains("Sandybridge)"),
            first.stdout)
        let saved = try CheckpointStore.verify(CheckpointStore(runFolder: URL(fileURLWithPath: run)).url(step: 3))
        XCTAssertEqual(saved.hardware?.blas?.hasSuffix(" Sandybridge"), true, "\(String(describing: saved.hardware))")
        XCTAssertEqual(saved.hardware?.cpu, HostCPU.read().model)

        let same = try runBaton(
            ["train", "--out", run, "--resume", "auto", "--steps", "4"]
                + common.filter { $0 != "6" && $0 != "--steps" },
            environment: ["OPENBLAS_CORETYPE": "Sandybridge"])
        XCTAssertEqual(same.status, 0, same.stderr)
        XCTAssertFalse(same.stdout.contains("bits will differ"), "the same hardware: no notice\n" + same.stdout)

        let other = try runBaton(
            ["train", "--out", run, "--resume", "auto"] + common, environment: ["OPENBLAS_CORETYPE": "Haswell"])
        XCTAssertEqual(other.status, 0, other.stderr)
        let notices = other.stdout.split(separator: "\n").filter { $0.contains("bits will differ") }
        XCTAssertEqual(notices.count, 1, other.stdout)
        XCTAssert(
            notices.first?.contains("Sandybridge") == true && notices.first?.contains("Haswell") == true, other.stdout)
        let resaved = try CheckpointStore.verify(CheckpointStore(runFolder: URL(fileURLWithPath: run)).url(step: 6))
        XCTAssertEqual(
            resaved.hardware?.blas?.hasSuffix(" Haswell"), true, "each checkpoint records the hardware that computed it"
        )
        #endif
    }
}
