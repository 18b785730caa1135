import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// --skip-loss-z and --skip-grad-z on injected spikes (a batch of garbage targets; gradients
/// times 1000) after the 128-step warm-up: the spike's update is skipped, and a run stopped before
/// it and resumed skips exactly the same update and ends with the same bytes.
final class SpikeGuardTests: TinyRunTestCase {
    var common: [String] {
        tinyModel + onCPU + [
            "--batch", "4", "--warmup", "3", "--lr", "3e-3", "--steps", "150", "--save-every", "0", "--log-every",
            "1000",
        ]
    }

    func run(_ name: String) -> String { folder.appendingPathComponent(name).path }

    func metrics(_ run: String) throws -> [StepMetrics] {
        try MetricsLog.read(URL(fileURLWithPath: run).appendingPathComponent("metrics.jsonl")).map {
            var m = $0
            m.tokensPerSecond = 0
            return m
        }
    }

    func finalTensors(_ run: String) throws -> [Data] {
        let checkpoint = CheckpointStore(runFolder: URL(fileURLWithPath: run)).url(step: 150)
        return try ["model.safetensors", "optimizer.safetensors"].map {
            try Data(contentsOf: checkpoint.appendingPathComponent($0))
        }
    }

    /// The spike skipped in a straight run and in one stopped at 135 and resumed; without the
    /// guard the same spike is applied.
    func assertSkipped(fault: String, guardFlags: [String], message: String) throws {
        let spike = ["--inject-fault", "\(fault):140"]
        let straight = try baton(["train", "--out", run("straight")] + common + spike + guardFlags)
        XCTAssert(straight.stdout.contains("step 140: \(message)"), straight.stdout)
        let seen = try metrics(run("straight"))
        XCTAssertEqual(seen.filter { $0.skipped == true }.map(\.step), [140])
        let state = try CheckpointStore.verify(
            CheckpointStore(runFolder: URL(fileURLWithPath: run("straight"))).url(step: 150))
        XCTAssertEqual(state.skippedUpdates, 1)
        XCTAssertEqual(
            state.lossWindow, seen.suffix(SpikeWindow.length).map(\.loss), "the window is the last 128 losses")
        XCTAssertEqual(state.gradientNormWindow, seen.suffix(SpikeWindow.length).map(\.gradNorm))

        try baton(["train", "--out", run("resumed"), "--stop-at", "135"] + common + spike + guardFlags)
        let resumed = try baton(["train", "--out", run("resumed"), "--resume", "auto"] + common + spike + guardFlags)
        XCTAssert(resumed.stdout.contains("step 140: \(message)"), resumed.stdout)
        XCTAssertEqual(try finalTensors(run("resumed")), try finalTensors(run("straight")), "the resumed run's bytes")
        XCTAssertEqual(try metrics(run("resumed")), seen)

        try baton(["train", "--out", run("unguarded")] + common + spike)
        XCTAssertEqual(try metrics(run("unguarded")).filter { $0.skipped == true }.map(\.step), [])
        XCTAssertNotEqual(try finalTensors(run("unguarded")), try finalTensors(run("straight")))
    }

    func testALossSpikeIsSkippedAndAResumeAcrossItSkipsTheSame() throws {
        try assertSkipped(
            fault: "garbage-batch", guardFlags: ["--skip-loss-z", "5"], message: "the loss's z-score is")
    }

    func testAGradientSpikeIsSkippedAndAResumeAcrossItSkipsTheSame() throws {
        try assertSkipped(
            fault: "grad-spike", guardFlags: ["--skip-grad-z", "5"], message: "the gradient norm's z-score is")
    }

    /// The loss guard does not see a gradient spike, and no guard skips anything in the warm-up.
    func testEachGuardWatchesItsOwnValueAfterTheWarmUp() throws {
        try baton(
            ["train", "--out", run("other"), "--inject-fault", "grad-spike:140", "--skip-loss-z", "5"] + common)
        XCTAssertEqual(try metrics(run("other")).filter { $0.skipped == true }.map(\.step), [])
        try baton(
            ["train", "--out", run("early"), "--inject-fault", "grad-spike:100", "--skip-grad-z", "1"] + common)
        let early = try metrics(run("early"))
        XCTAssertGreaterThan(early[99].gradNorm, 100)
        XCTAssert(early.prefix(128).allSatisfy { $0.skipped == nil }, "nothing is skipped before 128 steps")
    }
}
