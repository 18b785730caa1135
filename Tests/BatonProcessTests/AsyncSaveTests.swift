import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// --async-save: periodic checkpoints written by a background thread while training goes on.
/// The same bytes as synchronous saves; a SIGKILL while the write is stuck loses nothing; a failed
/// save follows --on-save-error; SIGTERM waits for the save in flight.
final class AsyncSaveTests: TinyRunTestCase {
    var common: [String] {
        tinyModel + onCPU + [
            "--batch", "4", "--warmup", "3", "--lr", "3e-3", "--log-every", "1000", "--eval-every", "10",
            "--eval-batches", "2", "--keep-last", "100",
        ]
    }

    func run(_ name: String) -> String { folder.appendingPathComponent(name).path }

    func store(_ run: String) -> CheckpointStore { CheckpointStore(runFolder: URL(fileURLWithPath: run)) }

    func tensors(_ run: String, _ step: Int) throws -> [Data] {
        try [CheckpointStore.modelFile, CheckpointStore.optimizerFile].map {
            try Data(contentsOf: store(run).url(step: step).appendingPathComponent($0))
        }
    }

    func metricsCount(_ run: String) -> Int {
        ((try? String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    func testBackgroundSavesWriteTheSameCheckpointsAsSynchronousOnes() throws {
        let flags = ["--steps", "23", "--save-every", "5"] + common
        try baton(["train", "--out", run("sync")] + flags)
        let background = try baton(["train", "--out", run("async"), "--async-save"] + flags)
        for step in [5, 10, 15, 20] {
            XCTAssert(
                background.stdout.contains("step-\(String(format: "%08d", step)) in ")
                    && background.stdout.contains("in the background"), background.stdout)
        }
        XCTAssertEqual(store(run("async")).steps(), [5, 10, 15, 20, 23])
        XCTAssertEqual(store(run("async")).latestName(), "step-00000023")
        for step in [5, 10, 15, 20, 23] {
            XCTAssertEqual(try tensors(run("async"), step), try tensors(run("sync"), step), "step \(step)")
            var left = try CheckpointStore.verify(store(run("async")).url(step: step))
            var right = try CheckpointStore.verify(store(run("sync")).url(step: step))
            left.savedAt = ""
            right.savedAt = ""
            XCTAssertEqual(left, right, "state.json of step \(step)")
        }
    }

    /// The save of step 10 stuck in its write: training goes on past it; a SIGKILL then leaves
    /// step 5 and `latest` as they were, and the resumed run ends with the uninterrupted run's bytes.
    func testAKillWhileTheBackgroundWriteIsStuckLosesNothing() throws {
        let flags = ["--steps", "40", "--save-every", "5"] + common
        try baton(["train", "--out", run("straight")] + flags)
        let marker = folder.appendingPathComponent("paused").path
        let process = try launchBaton(
            ["train", "--out", run("killed"), "--async-save", "--inject-fault", "pause-in-save:10:\(marker)"] + flags)
        try waitForFile(marker, process: process)
        try waitFor(process: process) { self.metricsCount(self.run("killed")) >= 14 }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(store(run("killed")).steps(), [5], "the stuck save never became a checkpoint")
        XCTAssertEqual(store(run("killed")).latestName(), "step-00000005")
        try baton(["train", "--out", run("killed"), "--resume", "auto", "--async-save"] + flags)
        XCTAssertEqual(try tensors(run("killed"), 40), try tensors(run("straight"), 40))
        XCTAssertEqual(store(run("killed")).steps(), [5, 10, 15, 20, 25, 30, 35, 40])
    }

    func testAFailedBackgroundSaveStopsTheRunOrIsRetriedAtTheNextSave() throws {
        let flags = ["--steps", "20", "--save-every", "5", "--async-save", "--inject-fault", "disk-full:10"] + common
        let stopped = try runBaton(["train", "--out", run("stop")] + flags)
        assertFailsInOneLine(stopped, mentioning: ["no space left on device", "step-00000010"])
        XCTAssertEqual(store(run("stop")).steps(), [5])
        XCTAssertEqual(store(run("stop")).latestName(), "step-00000005")
        let trained = try MetricsLog.read(URL(fileURLWithPath: run("stop") + "/metrics.jsonl")).map(\.step)
        // Reported at the first step that finds the save ended: at the latest the next save's, which waits for it.
        XCTAssert((10...15).contains(trained.last ?? 0), "reported by the next save: \(trained)")

        let retried = try runBaton(["train", "--out", run("retry"), "--on-save-error", "retry"] + flags)
        XCTAssertEqual(retried.status, 0, retried.stderr)
        XCTAssert(
            retried.stdout.contains("save at step 10 failed") && retried.stdout.contains("retrying at the next save"),
            retried.stdout)
        XCTAssertEqual(store(run("retry")).steps(), [5, 15, 20])
    }

    /// SIGTERM while the background save of step 5 is in its (slowed) write: the run waits for it,
    /// then saves the step it stopped at, and exits 0.
    func testSIGTERMWaitsForTheSaveInFlight() throws {
        let marker = folder.appendingPathComponent("writing").path
        let process = try launchBaton(
            [
                "train", "--out", run("term"), "--steps", "100000", "--save-every", "5", "--async-save",
                "--inject-fault", "slow-save:5:\(marker)",
            ] + common)
        try waitForFile(marker, process: process)
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let output = try String(contentsOfFile: run("term") + ".out", encoding: .utf8)
        let steps = store(run("term")).steps()
        XCTAssertEqual(steps.first, 5, output)
        XCTAssertGreaterThan(steps.last ?? 0, 5, "the stop saved its own step too: \(output)")
        for step in steps { XCTAssertNoThrow(try CheckpointStore.verify(store(run("term")).url(step: step))) }
        XCTAssertEqual(store(run("term")).latestName(), CheckpointStore.name(step: steps.last!))
        let saved = try XCTUnwrap(output.range(of: "step-00000005 in"), output)
        let stopped = try XCTUnwrap(output.range(of: "stopped by SIGTERM"), output)
        XCTAssert(saved.lowerBound < stopped.lowerBound, output)
    }
}

/// --async-save under mpirun: rank 0 writes in the background and every rank learns from it when
/// the save ended, so a failure stops every rank together.
extension DataParallelTests {
    func testBackgroundSavesUnderMpirunWriteTheSameBytesAndStopTogetherOnFailure() throws {
        try launch(ranks: 0, flags("alone") + ["--save-every", "2"])
        let job = try launch(ranks: 2, flags("async") + ["--save-every", "2", "--async-save"])
        XCTAssertEqual(job.status, 0, job.stderr)
        XCTAssert(job.stdout.contains("step-00000002 in ") && job.stdout.contains("in the background"), job.stdout)
        for step in [2, 4, 6] { XCTAssertEqual(try files("async", step: step), try files("alone", step: step)) }

        let failed = try launch(
            ranks: 2, flags("full") + ["--save-every", "2", "--async-save", "--inject-fault", "disk-full:4"])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssert(failed.stderr.contains("no space left on device"), failed.stderr)
        XCTAssertEqual(CheckpointStore(runFolder: folder.appendingPathComponent("full")).steps(), [2])
    }

    /// With ZeRO-1 every rank writes its slice within the save, over the communicator: those saves
    /// stay synchronous, said once, with the same bytes.
    func testBackgroundSavesWithZeroOneStaySynchronous() throws {
        try launch(ranks: 0, flags("alone") + ["--save-every", "2"])
        let job = try launch(ranks: 2, flags("zero") + ["--save-every", "2", "--async-save", "--zero", "1"])
        XCTAssertEqual(job.status, 0, job.stderr)
        XCTAssert(job.stdout.contains("--async-save with --zero 1 over 2 ranks: saves stay synchronous"), job.stdout)
        XCTAssertFalse(job.stdout.contains("in the background"), job.stdout)
        for step in [2, 4, 6] { XCTAssertEqual(try files("zero", step: step), try files("alone", step: step)) }
    }
}
