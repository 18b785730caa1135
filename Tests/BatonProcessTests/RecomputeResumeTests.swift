import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// --recompute changes memory, never the bits, so a resume may change it silently: a run started
/// at --recompute 2, stopped, and resumed at --recompute 1 ends with the same bytes and metrics as
/// the same run at level 0 uninterrupted, each part in a fresh `baton` process; GPT-2 in fp32, and
/// a Llama (multi-query, bf16, gradient accumulation).
final class RecomputeResumeTests: TinyRunTestCase {
    func testAResumeMayChangeTheLevelAndTheBitsStayTheSame() throws {
        // Three blocks, so the shared buffers are shared.
        let common =
            ["--data", data!, "--layers", "3", "--heads", "2", "--embd", "16", "--seq-len", "8"] + onCPU + [
                "--batch", "4", "--steps", "8", "--warmup", "2", "--lr", "3e-3", "--eval-every", "4", "--eval-batches",
                "2", "--log-every", "100", "--save-every", "4",
            ]
        let families: [(String, [String])] = [
            ("gpt2", []),
            ("llama", ["--arch", "llama", "--kv-heads", "1", "--precision", "bf16", "--grad-accum", "2"]),
        ]
        for (family, flags) in families {
            let straight = folder.appendingPathComponent("\(family)-straight").path
            let stopped = folder.appendingPathComponent("\(family)-stopped").path
            let uninterrupted = try baton(["train", "--out", straight] + common + flags)
            XCTAssert(uninterrupted.stdout.contains("(--recompute 0)"), uninterrupted.stdout)
            let first = try baton(["train", "--out", stopped, "--stop-at", "4", "--recompute", "2"] + common + flags)
            XCTAssert(first.stdout.contains("(--recompute 2)"), first.stdout)
            let resumed = try baton(["train", "--out", stopped, "--resume", "auto", "--recompute", "1"] + onCPU)
            XCTAssert(resumed.stdout.contains("(--recompute 1)"), resumed.stdout)
            XCTAssertFalse(resumed.stdout.contains("changed"), "\(family): a free setting gave a notice")
            try assertSameBytes(straight, stopped, family)
            XCTAssertEqual(try RunFolder(url: URL(fileURLWithPath: stopped)).readConfig()?.recompute, .activation)
        }
    }

    /// Every checkpoint's weights and moments byte for byte, and the metrics but the timings.
    func assertSameBytes(_ a: String, _ b: String, _ what: String) throws {
        let left = CheckpointStore(runFolder: URL(fileURLWithPath: a)),
            right = CheckpointStore(runFolder: URL(fileURLWithPath: b))
        XCTAssertEqual(left.steps(), [4, 8], what)
        XCTAssertEqual(left.steps(), right.steps(), what)
        for step in left.steps() {
            for name in [CheckpointStore.modelFile, CheckpointStore.optimizerFile] {
                XCTAssert(
                    try Data(contentsOf: left.url(step: step).appendingPathComponent(name))
                        == Data(contentsOf: right.url(step: step).appendingPathComponent(name)),
                    "\(what): \(name) of step \(step) differs")
            }
        }
        func metrics(_ run: String) throws -> [StepMetrics] {
            try MetricsLog.read(URL(fileURLWithPath: run).appendingPathComponent("metrics.jsonl")).map {
                var m = $0; m.tokensPerSecond = 0; return m
            }
        }
        XCTAssertEqual(try metrics(a), try metrics(b), "\(what): metrics")
    }
}
