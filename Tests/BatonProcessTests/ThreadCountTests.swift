import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The CPU backend gives the same bits whatever the thread count: work is cut into pieces that do
/// not depend on it (see baton_cpu.h). Shapes where every matmul has several pieces (512 rows).
final class ThreadCountTests: XCTestCase {
    /// A device's thread count is its own: opening another device does not change it.
    func testEachDeviceKeepsItsOwnThreadCount() {
        let three = Device.cpu(threads: 3)
        let one = Device.cpu(threads: 1)
        let blas = three.hardware.blas ?? "?"
        XCTAssertEqual(three.summary, "cpu (3 threads, \(blas))")
        XCTAssertEqual(one.summary, "cpu (1 thread, \(blas))")
    }

    func testOneTwoAndThreeThreadsTrainToTheSameBits() throws {
        let folder = try TestPaths.temporaryFolder("threads")
        defer { try? FileManager.default.removeItem(at: folder) }
        var weights: [Data] = [], metrics: [[StepMetrics]] = []
        for threads in [1, 2, 3] {
            let run = folder.appendingPathComponent("t\(threads)")
            let result = try runBaton([
                "train", "--out", run.path, "--device", "cpu", "--threads", "\(threads)", "--layers", "2", "--heads",
                "4",
                "--embd", "64", "--seq-len", "64", "--batch", "8", "--steps", "12", "--eval-every", "6",
                "--eval-batches", "2",
            ])
            XCTAssertEqual(result.status, 0, result.stderr)
            weights.append(
                try Data(
                    contentsOf: CheckpointStore(runFolder: run).url(step: 12).appendingPathComponent(
                        "model.safetensors")))
            metrics.append(
                try MetricsLog.read(run.appendingPathComponent("metrics.jsonl")).map {
                    var m = $0; m.tokensPerSecond = 0; return m
                })
        }
        XCTAssertEqual(metrics[0].count, 12)
        XCTAssert(
            weights[0] == weights[1] && weights[1] == weights[2],
            "the weights after 12 steps differ between 1, 2 and 3 threads")
        XCTAssert(
            metrics[0] == metrics[1] && metrics[1] == metrics[2],
            "the losses or gradient norms differ between 1, 2 and 3 threads")
    }
}
