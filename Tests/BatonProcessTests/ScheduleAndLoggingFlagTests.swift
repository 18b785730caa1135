import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The flags BreakageTests leaves out, each shown to change what it should: --lr, --min-lr and
/// --warmup through the learning rate metrics.jsonl records at every step (against the formula
/// written out here, not the product's), --eval-batches through the validation loss `baton eval`
/// computes on the same sequences, and --log-every through the progress lines printed.
final class ScheduleAndLoggingFlagTests: TinyRunTestCase {
    var common: [String] {
        tinyModel + [
            "--batch", "4", "--steps", "10", "--eval-every", "0", "--eval-batches", "1", "--log-every", "100",
            "--device", "cpu", "--threads", "2",
        ]
    }

    func train(_ name: String, _ flags: [String]) throws -> (metrics: [StepMetrics], stdout: String) {
        let run = folder.appendingPathComponent(name)
        var arguments = common
        for pair in stride(from: 0, to: flags.count, by: 2) {
            if let index = arguments.firstIndex(of: flags[pair]) {
                arguments[index + 1] = flags[pair + 1]
            } else {
                arguments += [flags[pair], flags[pair + 1]]
            }
        }
        let result = try runBaton(["train", "--out", run.path] + arguments)
        XCTAssertEqual(result.status, 0, result.stderr)
        return (try MetricsLog.read(run.appendingPathComponent("metrics.jsonl")), result.stdout)
    }

    func testLearningRateFlagsSetTheScheduleAtEveryStep() throws {
        for (lr, minLR, warmup) in [(3e-3, 1e-4, 3), (5e-3, 1e-3, 1), (1e-2, 2e-3, 6)] {
            let run = try train(
                "lr-\(lr)-\(minLR)-\(warmup)", ["--lr", "\(lr)", "--min-lr", "\(minLR)", "--warmup", "\(warmup)"])
            XCTAssertEqual(run.metrics.map(\.step), Array(1...10))
            for record in run.metrics {
                let s = Double(record.step - 1)  // the update's 0-based index
                let expected =
                    s < Double(warmup)
                    ? lr * (s + 1) / Double(warmup)
                    : minLR + (lr - minLR) * 0.5 * (1 + cos(Double.pi * (s - Double(warmup)) / Double(10 - warmup)))
                XCTAssertEqual(
                    Double(record.lr), expected, accuracy: expected * 1e-5,
                    "lr \(lr), min \(minLR), warmup \(warmup), step \(record.step)")
            }
        }
    }

    /// The four shapes' formulas, written out here (not the product's), with W warmup steps, S
    /// total steps, the update's 0-based index s and p = (s - W) / (S - W).
    func expectedRate(_ shape: String, s: Int, lr: Double, minLR: Double, W: Int, S: Int, fraction: Double) -> Double {
        if s < W { return lr * Double(s + 1) / Double(W) }
        let p = Double(s - W) / Double(S - W)
        switch shape {
        case "linear": return minLR + (lr - minLR) * (1 - p)
        case "constant": return lr
        case "wsd":
            let start = max(W, S - Int((fraction * Double(S)).rounded()))
            return s < start ? lr : minLR + (lr - minLR) * Double(S - s) / Double(S - start)
        default: return minLR + (lr - minLR) * 0.5 * (1 + cos(Double.pi * p))
        }
    }

    /// metrics.jsonl's lr column is each schedule's formula at every step.
    func testEachScheduleIsItsFormulaAtEveryStep() throws {
        for (shape, fraction) in [("cosine", 0.2), ("linear", 0.2), ("constant", 0.2), ("wsd", 0.2), ("wsd", 0.6)] {
            let run = try train(
                "\(shape)-\(fraction)",
                [
                    "--schedule", shape, "--decay-fraction", "\(fraction)", "--lr", "3e-3", "--min-lr", "1e-4",
                    "--warmup", "2",
                ])
            XCTAssertEqual(run.metrics.map(\.step), Array(1...10))
            for record in run.metrics {
                let expected = expectedRate(
                    shape, s: record.step - 1, lr: 3e-3, minLR: 1e-4, W: 2, S: 10, fraction: fraction)
                XCTAssertEqual(
                    Double(record.lr), expected, accuracy: expected * 1e-5, "\(shape) \(fraction), step \(record.step)")
            }
        }
        // The shapes differ where they should: wsd holds the peak where cosine has decayed.
        let wsd = try train("wsd-check", ["--schedule", "wsd", "--warmup", "2"]).metrics,
            cosine = try train("cos-check", ["--warmup", "2"]).metrics
        XCTAssertGreaterThan(wsd[6].lr, cosine[6].lr)
    }

    /// A resume that raises --steps: from the resumed step on, each shape is its formula over the
    /// new length (docs: LearningRateSchedule), and a resume without the flag keeps the old one.
    func testAResumeThatRaisesTheStepsFollowsEachScheduleOverTheNewLength() throws {
        for shape in ["cosine", "linear", "constant", "wsd"] {
            let run = folder.appendingPathComponent("raise-\(shape)")
            let flags = common + ["--schedule", shape, "--lr", "3e-3", "--min-lr", "1e-4", "--warmup", "2"]
            XCTAssertEqual(try runBaton(["train", "--out", run.path, "--stop-at", "5"] + flags).status, 0)
            let resumed = try runBaton(
                ["train", "--out", run.path, "--resume", "auto", "--steps", "14", "--device", "cpu", "--threads", "2"])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            let metrics = try MetricsLog.read(run.appendingPathComponent("metrics.jsonl"))
            XCTAssertEqual(metrics.map(\.step), Array(1...14), shape)
            for record in metrics {
                let total = record.step <= 5 ? 10 : 14
                let expected = expectedRate(
                    shape, s: record.step - 1, lr: 3e-3, minLR: 1e-4, W: 2, S: total, fraction: 0.2)
                XCTAssertEqual(Double(record.lr), expected, accuracy: expected * 1e-5, "\(shape), step \(record.step)")
            }
        }
    }

    func testEvalBatchesIsHowManyValidationBatchesTheLossAverages() throws {
        let oneRun = folder.appendingPathComponent("eval-1"), threeRun = folder.appendingPathComponent("eval-3")
        let one = try train("eval-1", ["--eval-batches", "1"]).metrics.last?.valLoss
        let three = try train("eval-3", ["--eval-batches", "3"]).metrics.last?.valLoss
        let valShard = URL(fileURLWithPath: data).appendingPathComponent("t_val_000000.bin").path
        for (run, loss, sequences) in [(oneRun, one, 4), (threeRun, three, 12)] {
            let evaluated = try runBaton([
                "eval", run.path, "--data", valShard, "--sequences", "\(sequences)", "--device", "cpu",
            ])
            XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
            let line = try XCTUnwrap(evaluated.stdout.split(separator: "\n").last { $0.hasPrefix("loss: ") })
            let reference = try XCTUnwrap(Float(line.dropFirst(6)))
            XCTAssertEqual(try XCTUnwrap(loss), reference, accuracy: reference * 1e-5, "\(sequences) sequences")
        }
        XCTAssertNotEqual(one, three)
    }

    func testLogEveryIsWhichStepsPrintAProgressLine() throws {
        for every in [1, 3, 100] {
            let printed = try train("log-\(every)", ["--log-every", "\(every)"]).stdout.split(separator: "\n")
                .compactMap { line -> Int? in
                    line.hasPrefix("step ") ? Int(line.dropFirst(5).prefix(while: \.isNumber)) : nil
                }
            // The first step, every multiple of --log-every, and the last (with the final validation loss).
            let expected = (1...10).filter { $0 == 1 || $0 % every == 0 || $0 == 10 }
            XCTAssertEqual(printed, expected, "--log-every \(every)")
        }
    }
}
