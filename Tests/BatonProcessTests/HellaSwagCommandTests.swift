import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// `baton eval RUN --hellaswag FILE` and `baton train --hellaswag FILE --hellaswag-every N` on tiny
/// byte-level runs: what eval prints and the one record it appends to the run's metrics.jsonl
/// (and nothing for a checkpoint folder), a bad file's one-line usage error, the training loop's
/// hellaswag figures at the right steps, and training losses that are the same bits with it,
/// without it, and across a stop and resume.
final class HellaSwagCommandTests: TinyRunTestCase {
    /// 1 layer, context 32: every example below fits (at most 33 bytes a row).
    var model: [String] {
        ["--data", data, "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "32"] + onCPU
    }
    var common: [String] { model + ["--batch", "4", "--eval-every", "0", "--eval-batches", "1", "--log-every", "100"] }

    /// Eight short examples in the official format.
    func writeExamples() throws -> URL {
        let examples: [(String, [String], Int)] = [
            ("The cat sat on the", ["mat.", "sky.", "sea.", "sun."], 0),
            ("He drank a cup of", ["rain.", "tea.", "wood.", "sand."], 1),
            ("She opened the", ["cloud.", "river.", "door.", "moon."], 2),
            ("Birds fly in the", ["soup.", "shoe.", "bread.", "air."], 3),
            ("Of man's first", ["disobedience", "banana", "engine", "laptop"], 0),
            ("The fruit of that", ["printer", "forbidden tree", "bus", "phone"], 1),
            ("Sing, heavenly", ["toaster", "garage", "Muse", "pixel"], 2),
            ("In the beginning how the", ["wifi", "radio", "cable", "heavens"], 3),
        ]
        let url = folder.appendingPathComponent("hellaswag.jsonl")
        let lines = try examples.enumerated().map { index, example in
            let object: [String: Any] = [
                "ind": index, "activity_label": "tiny", "ctx_a": example.0, "ctx_b": "", "ctx": example.0,
                "endings": example.1, "label": example.2, "split": "val", "split_type": "indomain",
            ]
            return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        }
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: url)
        return url
    }

    func run(_ name: String) -> String { folder.appendingPathComponent(name).path }

    func metricsLines(_ run: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    /// The steps whose metrics line has HellaSwag's figures.
    func scoredSteps(_ run: String) throws -> [Int] {
        try metricsLines(run).compactMap { $0["hellaswag_acc"] != nil ? $0["step"] as? Int : nil }
    }

    /// "acc: 0.2500 (2/8)" -> 0.25
    func printed(_ name: String, in stdout: String) throws -> Double {
        let line = try XCTUnwrap(stdout.split(separator: "\n").first { $0.hasPrefix("\(name): ") }, stdout)
        let fraction = try XCTUnwrap(line.split(separator: "(").last?.split(separator: ")").first, String(line))
        let parts = fraction.split(separator: "/").compactMap { Double($0) }
        XCTAssertEqual(parts.count, 2, String(line))
        return parts[0] / parts[1]
    }

    func testEvalPrintsBothAccuraciesAndAppendsOneRecordToTheRun() throws {
        let examples = try writeExamples()
        try baton(["train", "--out", run("r"), "--steps", "6"] + common)
        let metricsURL = URL(fileURLWithPath: run("r") + "/metrics.jsonl")
        let before = try Data(contentsOf: metricsURL)

        let first = try baton(["eval", run("r"), "--hellaswag", examples.path] + onCPU)
        XCTAssert(first.stdout.contains("tokenizer: bytes"), first.stdout)
        XCTAssert(first.stdout.contains("hellaswag: 8 examples from \(examples.path)"), first.stdout)
        let acc = try printed("acc", in: first.stdout), accNorm = try printed("acc_norm", in: first.stdout)
        XCTAssert(first.stdout.contains("metrics: appended to \(metricsURL.path) (step 6)"), first.stdout)

        // The training lines are untouched, one record follows them, and metrics readers skip it.
        let after = try Data(contentsOf: metricsURL)
        XCTAssertEqual(after.prefix(before.count), before)
        let lines = try metricsLines(run("r"))
        XCTAssertEqual(lines.count, 7)
        let record = lines[6]
        XCTAssertEqual(record["eval"] as? String, "hellaswag")
        XCTAssertEqual(record["step"] as? Int, 6)
        XCTAssertEqual(record["examples"] as? Int, 8)
        XCTAssertEqual(record["checkpoint"] as? String, CheckpointStore.name(step: 6))
        XCTAssertEqual(record["file"] as? String, examples.path)
        XCTAssertEqual(try XCTUnwrap(record["hellaswag_acc"] as? Double), acc, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(record["hellaswag_acc_norm"] as? Double), accNorm, accuracy: 1e-12)
        XCTAssertEqual(try MetricsLog.read(metricsURL).map(\.step), Array(1...6))
        try baton(["plot", run("r"), "--out", folder.appendingPathComponent("plot.svg").path])

        // --examples N scores the first N; a second eval appends a second record.
        let some = try baton(["eval", run("r"), "--hellaswag", examples.path, "--examples", "3"] + onCPU)
        XCTAssert(some.stdout.contains("hellaswag: 3 examples"), some.stdout)
        XCTAssertEqual(try metricsLines(run("r")).count, 8)
        XCTAssertEqual(try metricsLines(run("r"))[7]["examples"] as? Int, 3)
        XCTAssertEqual(try Data(contentsOf: metricsURL).prefix(after.count), after)

        // A checkpoint folder is scored the same, and nothing is written.
        let checkpoint = run("r") + "/checkpoints/" + CheckpointStore.name(step: 6)
        let alone = try baton(["eval", checkpoint, "--hellaswag", examples.path] + onCPU)
        XCTAssertEqual(try printed("acc", in: alone.stdout), acc)
        XCTAssertEqual(try printed("acc_norm", in: alone.stdout), accNorm)
        XCTAssertFalse(alone.stdout.contains("metrics:"), alone.stdout)
        XCTAssertEqual(try metricsLines(run("r")).count, 8)

        // A resume from the step the record scored keeps it; the run goes on after it.
        try baton(["train", "--out", run("r"), "--resume", "auto", "--steps", "8"] + common)
        let resumed = try metricsLines(run("r"))
        XCTAssertEqual(resumed.filter { $0["eval"] != nil }.count, 2)
        XCTAssertEqual(try MetricsLog.read(metricsURL).map(\.step), Array(1...8))
    }

    func testABadFileIsOneLineAndAUsageError() throws {
        try baton(["train", "--out", run("r"), "--steps", "2"] + common)
        let metricsURL = URL(fileURLWithPath: run("r") + "/metrics.jsonl")
        let before = try Data(contentsOf: metricsURL)
        let bad = folder.appendingPathComponent("bad.jsonl")
        try Data(
            (#"{"ctx": "a b", "endings": ["c", "d", "e", "f"], "label": 1}"# + "\n"
                + #"{"ctx": "a b", "endings": ["c", "d", "e", "f"], "label": 7}"# + "\n").utf8
        ).write(to: bad)
        let result = try runBaton(["eval", run("r"), "--hellaswag", bad.path] + onCPU)
        assertFailsInOneLine(result, mentioning: ["\(bad.path) line 2", "label 7"])
        XCTAssertEqual(result.status, 2)

        let long = folder.appendingPathComponent("long.jsonl")
        try Data(
            (#"{"ctx": "\#(String(repeating: "word ", count: 10))", "endings": ["a", "b", "c", "d"], "label": 0}"#)
                .utf8
        ).write(to: long)
        let tooLong = try runBaton(["eval", run("r"), "--hellaswag", long.path] + onCPU)
        assertFailsInOneLine(tooLong, mentioning: ["\(long.path) line 1", "more than the model reads (context 32"])
        XCTAssertEqual(tooLong.status, 2)

        let empty = folder.appendingPathComponent("empty.jsonl")
        try Data().write(to: empty)
        let none = try runBaton(["eval", run("r"), "--hellaswag", empty.path] + onCPU)
        assertFailsInOneLine(none, mentioning: ["\(empty.path): no examples"])
        XCTAssertEqual(none.status, 2)

        for flags in [["--data", bad.path], ["--examples", "0"]] {
            let usage = try runBaton(["eval", run("r"), "--hellaswag", bad.path] + flags + onCPU)
            XCTAssertEqual(usage.status, 2, usage.stderr)
            XCTAssertEqual(usage.stderr.split(separator: "\n").count, 1, usage.stderr)
        }
        XCTAssertEqual(try Data(contentsOf: metricsURL), before)

        // In training, a bad file stops the start: exit 2, and no run folder is left behind.
        let refused = try runBaton(["train", "--out", run("t"), "--steps", "2", "--hellaswag", bad.path] + common)
        assertFailsInOneLine(refused, mentioning: ["\(bad.path) line 2"])
        XCTAssertEqual(refused.status, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run("t")))
    }

    /// A Llama-family run on text prepared with a tokenizer.json is scored in that tokenizer's tokens,
    /// in training and by eval, which names it and gives what the same folder passed by hand gives.
    func testALlamaRunScoresWithItsTokenizerJSON() throws {
        let examples = try writeExamples()
        let text = folder.appendingPathComponent("poem.txt")
        try Data(try bundledText(prefix: 20000).utf8).write(to: text)
        let llama = TestPaths.repositoryRoot.appendingPathComponent("data/llama-tokenizer").path
        let prepared = folder.appendingPathComponent("llama-data").path
        try baton(["prepare", text.path, "--tokenizer", llama, "--out", prepared])
        let flags =
            ["--data", prepared, "--arch", "llama", "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "32"]
            + onCPU + ["--batch", "4", "--eval-every", "0", "--eval-batches", "1", "--log-every", "100"]
        try baton(
            ["train", "--out", run("llama"), "--steps", "3", "--hellaswag", examples.path, "--hellaswag-every", "2"]
                + flags)
        XCTAssertEqual(
            try scoredSteps(run("llama")), [2, 3])

        let own = try baton(["eval", run("llama"), "--hellaswag", examples.path] + onCPU)
        XCTAssert(own.stdout.contains("tokenizer: \(prepared)/tokenizer (the run's)"), own.stdout)
        let named = try baton(["eval", run("llama"), "--hellaswag", examples.path, "--tokenizer", llama] + onCPU)
        func figures(_ stdout: String) -> [Substring] {
            stdout.split(separator: "\n").filter { $0.hasPrefix("acc") || $0.hasPrefix("hellaswag:") }
        }
        XCTAssertEqual(figures(own.stdout), figures(named.stdout))
        XCTAssertEqual(figures(own.stdout).count, 3, own.stdout)
        // Bytes make longer rows: the tokenizer.json's tokens were the ones scored.
        let bytes = try baton(["eval", run("llama"), "--hellaswag", examples.path, "--tokenizer", "bytes"] + onCPU)
        XCTAssertNotEqual(figures(own.stdout).first, figures(bytes.stdout).first)
    }

    /// A run another process holds (as a training process holds it) is refused before any scoring;
    /// a metrics file whose last line was cut short gets the record on a line of its own.
    func testEvalRefusesARunInUseAndAppendsAfterATornLine() throws {
        let examples = try writeExamples()
        try baton(["train", "--out", run("r"), "--steps", "2"] + common)
        let metricsURL = URL(fileURLWithPath: run("r") + "/metrics.jsonl")
        var held: RunLock? = try RunLock(runFolder: URL(fileURLWithPath: run("r")))
        let refused = try runBaton(["eval", run("r"), "--hellaswag", examples.path] + onCPU)
        assertFailsInOneLine(refused, mentioning: [run("r"), "in use"])
        XCTAssertFalse(refused.stdout.contains("acc:"), refused.stdout)
        held = nil
        XCTAssertNil(held)

        let torn = Data(#"{"step":3,"epo"#.utf8)
        let before = try Data(contentsOf: metricsURL) + torn
        try before.write(to: metricsURL)
        try baton(["eval", run("r"), "--hellaswag", examples.path] + onCPU)
        let after = try String(contentsOf: metricsURL, encoding: .utf8)
        XCTAssert(after.hasPrefix(String(decoding: before, as: UTF8.self) + "\n{"), after)
        XCTAssertEqual(after.split(separator: "\n").count, 4)
        XCTAssert(after.split(separator: "\n").last!.contains(#""eval":"hellaswag""#), after)
    }

    func testTrainingScoresAtTheStepsAskedAndLeavesTheLossesAlone() throws {
        let examples = try writeExamples().path
        let plain = try MetricsLog.read(
            URL(fileURLWithPath: try trained("plain", ["--steps", "8"]) + "/metrics.jsonl"))
        let every3 = try trained("every3", ["--steps", "8", "--hellaswag", examples, "--hellaswag-every", "3"])
        let lines = try metricsLines(every3)
        XCTAssertEqual(lines.compactMap { $0["hellaswag_acc"] != nil ? $0["step"] as? Int : nil }, [3, 6, 8])
        XCTAssertEqual(lines.compactMap { $0["hellaswag_acc_norm"] != nil ? $0["step"] as? Int : nil }, [3, 6, 8])
        let withIt = try MetricsLog.read(URL(fileURLWithPath: every3 + "/metrics.jsonl"))
        XCTAssertEqual(withIt.map(\.loss.bitPattern), plain.map(\.loss.bitPattern))
        XCTAssertEqual(withIt.map(\.gradNorm.bitPattern), plain.map(\.gradNorm.bitPattern))
        for record in withIt where record.hellaswagAcc != nil {
            for value in [record.hellaswagAcc!, record.hellaswagAccNorm!] {
                XCTAssert((0...1).contains(value) && (value * 8).rounded() == value * 8, "\(value)")
            }
        }

        // Unset --hellaswag-every follows --eval-every; 0 scores only at the end.
        let withValidation = try trained(
            "with-validation", ["--steps", "8", "--hellaswag", examples, "--eval-every", "4"])
        XCTAssertEqual(
            try scoredSteps(withValidation),
            [4, 8])
        let atEnd = try trained("at-end", ["--steps", "8", "--hellaswag", examples, "--hellaswag-every", "0"])
        XCTAssertEqual(
            try scoredSteps(atEnd), [8])

        // Stopped at 4 and resumed: the same lines as the straight run, the figures included.
        let stopped = run("stopped")
        try baton(
            [
                "train", "--out", stopped, "--steps", "8", "--stop-at", "4", "--hellaswag", examples,
                "--hellaswag-every",
                "3",
            ] + common)
        let resumed = try baton(["train", "--out", stopped, "--resume", "auto"] + common)
        XCTAssert(resumed.stdout.contains("step 6: hellaswag: acc "), resumed.stdout)
        XCTAssertEqual(
            try String(contentsOfFile: stopped + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
                withoutSpeed($0)
            },
            try String(contentsOfFile: every3 + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
                withoutSpeed($0)
            })

        // A resume may add the settings, or change them, silently; the losses stay the plain run's.
        let added = run("added")
        try baton(["train", "--out", added, "--steps", "8", "--stop-at", "4"] + common)
        let adding = try baton(
            ["train", "--out", added, "--resume", "auto", "--hellaswag", examples, "--hellaswag-every", "2"] + common)
        XCTAssertFalse(adding.stdout.contains("changed:"), adding.stdout)
        XCTAssertEqual(try scoredSteps(added), [6, 8])
        XCTAssertEqual(
            try MetricsLog.read(URL(fileURLWithPath: added + "/metrics.jsonl")).map(\.loss.bitPattern),
            plain.map(\.loss.bitPattern))
        let changed = run("changed")
        try baton(
            [
                "train", "--out", changed, "--steps", "8", "--stop-at", "4", "--hellaswag", examples,
                "--hellaswag-every",
                "3",
            ] + common)
        let changing = try baton(
            ["train", "--out", changed, "--resume", "auto", "--hellaswag-every", "4"] + common)
        XCTAssertFalse(changing.stdout.contains("changed:"), changing.stdout)
        XCTAssertEqual(
            try scoredSteps(changed), [3, 8])
    }

    /// Trains `name` with `flags` on top of `common`; returns the run folder.
    func trained(_ name: String, _ flags: [String]) throws -> String {
        var arguments = common
        for pair in stride(from: 0, to: flags.count, by: 2) {
            if let index = arguments.firstIndex(of: flags[pair]) {
                arguments[index + 1] = flags[pair + 1]
            } else {
                arguments += [flags[pair], flags[pair + 1]]
            }
        }
        try baton(["train", "--out", run(name)] + arguments)
        return run(name)
    }

    /// A metrics line without its tokens_per_s (a timing).
    func withoutSpeed(_ line: Substring) -> String {
        line.replacingOccurrences(of: #""tokens_per_s":[^,}]*,?"#, with: "", options: .regularExpression)
    }
}
