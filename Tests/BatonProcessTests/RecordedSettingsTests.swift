import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// A resume continues the run it resumes: every setting recorded in the run's config is taken
/// from the checkpoint, not from a flag's default. For each setting, a run started with a
/// non-default value, stopped, and resumed with no flag at all (only --out and --resume) must end
/// exactly as the same run uninterrupted: the same bytes, the same metrics, the same checkpoints
/// kept, the same progress lines, the same recorded config.
final class RecordedSettingsTests: TinyRunTestCase {
    /// The run every case changes one setting of: 8 steps of a tiny model, stopped after step 4.
    var base: [String] {
        tinyModel + [
            "--batch", "4", "--warmup", "3", "--lr", "3e-3", "--steps", "8", "--eval-every", "3", "--eval-batches", "2",
            "--log-every", "100", "--save-every", "4",
        ]
    }

    /// Not recorded, so given to every command (the bits do not depend on the thread count).
    let machine = ["--device", "cpu", "--threads", "2"]

    /// Each recorded setting with a value other than the default and the base's. The flags that
    /// only act on a rare event (--on-nonfinite on a NaN, --on-save-error on a full disk) or only
    /// with several ranks (--reduce, --zero: DataParallelTests) are checked here through the recorded config.
    let settings: [(flag: String, value: String)] = [
        ("--lr", "5e-3"), ("--min-lr", "1e-3"), ("--warmup", "1"), ("--weight-decay", "0.5"), ("--beta1", "0.8"),
        ("--beta2", "0.9"), ("--grad-clip", "0.05"), ("--seed", "7"), ("--batch", "2"), ("--grad-accum", "2"),
        ("--global-batch", "8"), ("--epochs", "2"), ("--eval-every", "2"), ("--eval-batches", "1"),
        ("--log-every", "1"),
        ("--save-every", "2"), ("--keep-last", "1"), ("--keep-every", "3"), ("--seq-len", "6"), ("--layers", "2"),
        ("--heads", "4"), ("--embd", "24"), ("--vocab-size", "300"), ("--precision", "bf16"),
        ("--on-nonfinite", "skip"),
        ("--on-save-error", "retry"), ("--reduce", "fast"), ("--arch", "llama"), ("--schedule", "wsd"),
        ("--decay-fraction", "0.5"), ("--skip-loss-z", "4"), ("--skip-grad-z", "6"),
        // Examples of at most 9 bytes a row, for the tiny model's context of 8.
        ("--hellaswag", "Tests/BatonTests/Fixtures/hellaswag/short.jsonl"), ("--hellaswag-every", "2"),
        ("--zero", "1"),
        ("--recompute", "2"),
    ]

    /// The Llama family's settings, each given with --arch llama.
    let llamaSettings: [(flag: String, value: String)] = [
        ("--kv-heads", "1"), ("--intermediate-size", "40"), ("--rope-theta", "500000"), ("--norm-eps", "1e-6"),
        ("--tie-embeddings", "true"), ("--attention-bias", "true"),
    ]

    func testEverySettingIsTakenFromTheRunOnResume() throws {
        var covered: Set<String> = []
        let cases =
            settings.map { ($0.flag, $0.value, base) }
            + llamaSettings.map { ($0.flag, $0.value, base + ["--arch", "llama"]) }
        for (flag, value, base) in cases {
            covered.insert(flag)
            let straight = folder.appendingPathComponent("straight\(flag)").path
            let stopped = folder.appendingPathComponent("stopped\(flag)").path
            let given = overriding(base, flag, value)
            let uninterrupted = try baton(["train", "--out", straight] + given + machine)
            try baton(["train", "--out", stopped, "--stop-at", "4"] + given + machine)
            let resumed = try baton(["train", "--out", stopped, "--resume", "auto"] + machine)
            XCTAssertFalse(
                resumed.stdout.contains("changed:"),
                "\(flag): a resume with no flags changed the run: \(resumed.stdout)")
            try assertSameRun(straight, stopped, flag)
            XCTAssertEqual(
                progressLines(uninterrupted.stdout, after: 4), progressLines(resumed.stdout, after: 4),
                "\(flag): progress lines")
        }
        // Every setting is one of the cases above, but the base's data and length.
        for entry in TrainingConfig.settings where !["--data", "--steps"].contains(entry.flag) {
            XCTAssert(covered.contains(entry.flag), "setting \(entry.key) (\(entry.flag)) has no case in this test")
        }
    }

    // MARK: helpers

    func overriding(_ arguments: [String], _ flag: String, _ value: String) -> [String] {
        var result = arguments
        if let index = result.firstIndex(of: flag) { result[index + 1] = value } else { result += [flag, value] }
        // --epochs sets the total instead of --steps.
        if flag == "--epochs", let index = result.firstIndex(of: "--steps") {
            result.removeSubrange(index...(index + 1))
        }
        return result
    }

    /// The same bytes in every checkpoint both runs kept, the same checkpoints kept, the same
    /// metrics (but the timing), and the same recorded config.
    func assertSameRun(
        _ a: String, _ b: String, _ what: String, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let left = CheckpointStore(runFolder: URL(fileURLWithPath: a)),
            right = CheckpointStore(runFolder: URL(fileURLWithPath: b))
        XCTAssertEqual(left.steps(), right.steps(), "\(what): checkpoints kept", file: file, line: line)
        for step in Set(left.steps()).intersection(right.steps()) {
            for name in [CheckpointStore.modelFile, CheckpointStore.optimizerFile] {
                let x = try Data(contentsOf: left.url(step: step).appendingPathComponent(name))
                let y = try Data(contentsOf: right.url(step: step).appendingPathComponent(name))
                XCTAssert(x == y, "\(what): \(name) of step \(step) differs", file: file, line: line)
            }
            XCTAssertEqual(
                try CheckpointStore.verify(left.url(step: step)).config,
                try CheckpointStore.verify(right.url(step: step)).config,
                "\(what): recorded config at step \(step)", file: file, line: line)
        }
        func metrics(_ run: String) throws -> [StepMetrics] {
            try MetricsLog.read(URL(fileURLWithPath: run).appendingPathComponent("metrics.jsonl")).map {
                var m = $0; m.tokensPerSecond = 0; return m
            }
        }
        XCTAssertEqual(try metrics(a), try metrics(b), "\(what): metrics", file: file, line: line)
    }

    /// "step 5/8 | loss ... | grad norm ..." lines after `step`, without their timings.
    func progressLines(_ output: String, after step: Int) -> [String] {
        output.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("step "), let number = Int(line.dropFirst(5).prefix(while: \.isNumber)), number > step
            else { return nil }
            return line.split(separator: "|").filter { !$0.contains("tok/s") && !$0.contains("ETA") }.joined(
                separator: "|")
        }
    }
}
