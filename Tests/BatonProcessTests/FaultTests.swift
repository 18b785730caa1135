import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// Failures nobody plans: a second writer, a dead writer's lock, data changing under a run, a
/// NaN, a full disk. Each is survived with nothing good lost.
final class FaultTests: TinyRunTestCase {
    var common: [String] { tinyModel + onCPU + ["--batch", "4", "--warmup", "3", "--lr", "3e-3"] + quiet }
    let quiet = ["--eval-every", "0", "--log-every", "1000"]

    func run(_ name: String) -> String { folder.appendingPathComponent(name).path }

    func metricsCount(_ run: String) -> Int {
        ((try? String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8))?.split(separator: "\n").count) ?? 0
    }

    func testASecondWriterIsRefusedAndADeadWritersLockIsNot() throws {
        let first = try launchBaton(["train", "--out", run("a"), "--steps", "1000000", "--save-every", "5"] + common)
        try waitFor(process: first) { self.metricsCount(self.run("a")) >= 6 }
        let second = try runBaton(["train", "--out", run("a"), "--resume", "auto"] + common)
        assertFailsInOneLine(second, mentioning: [run("a"), "in use by baton process \(first.processIdentifier)"])
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        // The dead process's lock file is still there; it must not block.
        XCTAssert(FileManager.default.fileExists(atPath: run("a") + "/.lock"))
        let resumed = try runBaton(["train", "--out", run("a"), "--resume", "auto", "--steps", "12"] + common)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
    }

    func testAShardTruncatedOrRewrittenMidRunIsAClearErrorAndTheCheckpointSurvives() throws {
        for change in ["truncate", "rewrite"] {
            let shards = folder.appendingPathComponent("copy-\(change)")
            try FileManager.default.copyItem(at: URL(fileURLWithPath: data), to: shards)
            let train = shards.appendingPathComponent("t_train_000000.bin")
            let arguments =
                ["train", "--out", run(change), "--steps", "1000000", "--save-every", "5"]
                + common.map { $0 == data ? shards.path : $0 }
            let process = try launchBaton(arguments)
            try waitFor(process: process) { self.metricsCount(self.run(change)) >= 12 }
            if change == "truncate" {
                let handle = try FileHandle(forWritingTo: train)
                try handle.truncate(atOffset: 1024 + 100)
                try handle.close()
            } else {
                try TokenShard.write(tokens: [UInt16](repeating: 7, count: 385), to: train)  // same size, new file
            }
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 1, "\(change): a clean error exit, not a crash")
            let stderr = try String(contentsOfFile: run(change) + ".err", encoding: .utf8)
            XCTAssertEqual(stderr.split(separator: "\n").count, 1, stderr)
            XCTAssert(stderr.contains("t_train_000000.bin") && stderr.contains("changed during the run"), stderr)
            let store = CheckpointStore(runFolder: URL(fileURLWithPath: run(change)))
            let newest = try XCTUnwrap(store.steps().last)
            XCTAssertNoThrow(try CheckpointStore.verify(store.url(step: newest)))
        }
    }

    func testNonFiniteStopsByDefaultAndSkipsWhenAsked() throws {
        let nan = ["--inject-fault", "nonfinite:7"]
        let stop = try launchBaton(
            ["train", "--out", run("stop"), "--steps", "10", "--save-every", "5"] + nan + common)
        stop.waitUntilExit()
        XCTAssertEqual(stop.terminationStatus, 1)
        let stderr = try String(contentsOfFile: run("stop") + ".err", encoding: .utf8)
        XCTAssert(stderr.contains("step 7: the gradient norm is nan") && stderr.contains("step-00000005"), stderr)
        XCTAssertEqual(CheckpointStore(runFolder: URL(fileURLWithPath: run("stop"))).steps(), [5])
        XCTAssertEqual(
            try MetricsLog.read(URL(fileURLWithPath: run("stop") + "/metrics.jsonl")).map(\.step), Array(1...6))

        let skip = try launchBaton(
            ["train", "--out", run("skip"), "--steps", "10", "--save-every", "5", "--on-nonfinite", "skip"] + nan
                + common)
        skip.waitUntilExit()
        XCTAssertEqual(skip.terminationStatus, 0)
        let metrics = try MetricsLog.read(URL(fileURLWithPath: run("skip") + "/metrics.jsonl"))
        XCTAssertEqual(metrics.map(\.step), Array(1...10))
        XCTAssertEqual(metrics.filter { $0.skipped == true }.map(\.step), [7])
        XCTAssert(metrics[6].gradNorm.isNaN)
        let state = try CheckpointStore.verify(checkpoint(run("skip"), 10))
        XCTAssertEqual(state.skippedUpdates, 1)
        let model = try ModelWeights.openModel(path: run("skip"), device: Device.cpu())
        XCTAssert(
            try model.device.download(model.parameters).allSatisfy(\.isFinite), "no non-finite weight is ever saved")
    }

    func checkpoint(_ run: String, _ step: Int) -> URL {
        CheckpointStore(runFolder: URL(fileURLWithPath: run)).url(step: step)
    }

    /// A real ENOSPC on a small tmpfs where this machine lets the test mount one, else the
    /// test-only switch that fails a save half-way the same way.
    func testADiskFullDuringASaveLosesNothing() throws {
        let mountPoint = folder.appendingPathComponent("small-disk")
        try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
        let mounted = getuid() == 0 && shell("mount -t tmpfs -o size=560k tmpfs '\(mountPoint.path)'") == 0
        defer { if mounted { _ = shell("umount '\(mountPoint.path)'") } }
        let out = mountPoint.appendingPathComponent("run").path
        let result = try runBaton(
            ["train", "--out", out, "--steps", "40", "--save-every", "2", "--keep-last", "100"] + common
                + (mounted ? [] : ["--inject-fault", "disk-full:8"]))
        if !mounted { print("note: tmpfs could not be mounted here; used --inject-fault disk-full:8") }
        assertFailsInOneLine(
            result, mentioning: ["no space left on device", "needs about", "earlier checkpoints and latest are intact"])
        let store = CheckpointStore(runFolder: URL(fileURLWithPath: out))
        let steps = store.steps()
        XCTAssertFalse(steps.isEmpty)
        for step in steps { XCTAssertNoThrow(try CheckpointStore.verify(store.url(step: step))) }
        XCTAssertEqual(store.latestName(), CheckpointStore.name(step: steps.last!))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: store.folder.path).filter {
            $0.hasPrefix(".")
        }
        XCTAssertEqual(leftovers, [], "the failed save removed its temporary folder")
    }

    func testSaveErrorsCanBeRetriedAtTheNextSave() throws {
        let result = try runBaton(
            [
                "train", "--out", run("retry"), "--steps", "12", "--save-every", "4", "--on-save-error", "retry",
                "--inject-fault", "disk-full:4",
            ] + common)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssert(
            result.stdout.contains("save at step 4 failed") && result.stdout.contains("retrying at the next save"),
            result.stdout)
        XCTAssertEqual(CheckpointStore(runFolder: URL(fileURLWithPath: run("retry"))).steps(), [8, 12])
    }
}
