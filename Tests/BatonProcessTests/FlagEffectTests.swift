import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// For the flags of the commands other than `train` (sample, eval, prepare, plot,
/// bench), a non-default value changes what it should. Each assertion fails if the flag were
/// ignored (its default used instead). One tiny byte-level run is trained per test class.
final class FlagEffectTests: XCTestCase {
    nonisolated(unsafe) static var shared: (folder: URL, data: String, run: URL)?

    var folder: URL { Self.shared!.folder }
    var data: String { Self.shared!.data }
    var run: URL { Self.shared!.run }

    override func setUpWithError() throws {
        if Self.shared != nil { return }
        let folder = try TestPaths.temporaryFolder("flag-effect")
        let data = try makeTinyShards(in: folder)
        let run = folder.appendingPathComponent("run")
        let trained = try runBaton([
            "train", "--data", data, "--out", run.path, "--layers", "1", "--heads", "2", "--embd", "16",
            "--seq-len", "8", "--batch", "4", "--steps", "3", "--device", "cpu",
        ])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        Self.shared = (folder, data, run)
    }

    override class func tearDown() {
        if let folder = shared?.folder { try? FileManager.default.removeItem(at: folder) }
        shared = nil
        super.tearDown()
    }

    // MARK: helpers

    /// `baton sample` of the tiny run; stdout as bytes.
    func sample(_ flags: [String]) throws -> Data {
        let process = Process()
        process.executableURL = TestPaths.batonExecutable
        process.arguments = ["sample", run.path, "--device", "cpu"] + flags
        let out = folder.appendingPathComponent("sample-\(UUID().uuidString.prefix(8))")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "baton sample \(flags)")
        return try Data(contentsOf: out)
    }

    // MARK: sample

    func testSampleTemperature() throws {
        // Greedy (0) ignores the seed; so does a temperature near 0. At the default 0.8 the seeds would differ.
        let greedy1 = try sample(["--length", "40", "--temperature", "0", "--seed", "1"])
        let greedy2 = try sample(["--length", "40", "--temperature", "0", "--seed", "2"])
        XCTAssertEqual(greedy1, greedy2, "temperature 0 is greedy: the seed must not matter")
        XCTAssertEqual(
            try sample(["--length", "40", "--temperature", "0.0001", "--seed", "3"]), greedy1,
            "a tiny temperature samples the greedy text")
        let hot = try sample(["--length", "40", "--temperature", "5", "--seed", "1"])
        XCTAssertNotEqual(hot, greedy1, "a high temperature must vary from the greedy text")
    }

    func testSampleSeed() throws {
        let a = try sample(["--length", "40", "--temperature", "1", "--seed", "7"])
        XCTAssertEqual(try sample(["--length", "40", "--temperature", "1", "--seed", "7"]), a, "same seed, same text")
        XCTAssertNotEqual(
            try sample(["--length", "40", "--temperature", "1", "--seed", "8"]), a, "another seed, another text")
        XCTAssertNotEqual(
            try sample(["--length", "40", "--temperature", "1"]), a, "seed 7 is not the default seed's text")
    }

    func testSampleTopK() throws {
        // --top-k 1 keeps only the likeliest token: the greedy text, whatever the temperature and seed.
        let greedy = try sample(["--length", "40", "--temperature", "0"])
        XCTAssertEqual(try sample(["--length", "40", "--temperature", "1", "--seed", "5", "--top-k", "1"]), greedy)
        XCTAssertNotEqual(
            try sample(["--length", "40", "--temperature", "1", "--seed", "5"]), greedy,
            "without --top-k 1 the text varies")
    }

    func testSampleLength() throws {
        // Byte tokenizer: one byte a token, plus the closing newline (the default prompt is empty).
        for length in [0, 5, 17] {
            XCTAssertEqual(
                try sample(["--length", "\(length)", "--temperature", "0"]).count, length + 1, "--length \(length)")
        }
    }

    func testSamplePrompt() throws {
        let prompt = "Of Mans First Disobedience"
        let output = try sample(["--prompt", prompt, "--length", "10", "--temperature", "0"])
        XCTAssertEqual(output.count, prompt.utf8.count + 10 + 1)
        XCTAssertTrue(output.starts(with: Data(prompt.utf8)), "the output starts with the prompt")
        let plain = try sample(["--length", "10", "--temperature", "0"])
        XCTAssertFalse(plain.starts(with: Data(prompt.utf8)))
    }

    // MARK: eval

    func loss(_ result: ProcessResult) throws -> Double {
        let line = try XCTUnwrap(result.stdout.split(separator: "\n").first { $0.hasPrefix("loss: ") })
        return try XCTUnwrap(Double(line.dropFirst("loss: ".count)))
    }

    func testEvalSequences() throws {
        let val = URL(fileURLWithPath: data).appendingPathComponent("t_val_000000.bin")
        let tokens = try TokenShard(url: val, vocabularySize: 256).tokens(start: 0, count: 100).map { UInt16($0) }
        let four = try loss(
            runBatonExpectingSuccess(["eval", run.path, "--data", val.path, "--sequences", "4", "--device", "cpu"]))
        let eight = try loss(
            runBatonExpectingSuccess(["eval", run.path, "--data", val.path, "--sequences", "8", "--device", "cpu"]))
        XCTAssertNotEqual(four, eight, "4 and 8 sequences are other sets of tokens")
        // Sequence i is tokens[8i ..< 8i+9]: evaluate each alone, from a shard holding just it.
        var losses: [Double] = []
        for i in 0..<4 {
            let alone = folder.appendingPathComponent("eval-seq-\(i).bin")
            try TokenShard.write(tokens: Array(tokens[(8 * i)..<(8 * i + 9)]), to: alone)
            losses.append(
                try loss(
                    runBatonExpectingSuccess([
                        "eval", run.path, "--data", alone.path, "--sequences", "1", "--device", "cpu",
                    ])))
        }
        XCTAssertEqual(
            four, losses.reduce(0, +) / 4, accuracy: 1e-4 * abs(four),
            "--sequences 4 is the mean over the first 4 sequences")
        // And a shard of exactly those 4 sequences (33 tokens) gives the same loss.
        let firstFour = folder.appendingPathComponent("eval-first-four.bin")
        try TokenShard.write(tokens: Array(tokens[0..<33]), to: firstFour)
        let again = try loss(
            runBatonExpectingSuccess([
                "eval", run.path, "--data", firstFour.path, "--sequences", "4", "--device", "cpu",
            ]))
        XCTAssertEqual(four, again, accuracy: 1e-5 * abs(four))
    }

    // MARK: prepare

    func shardFiles(_ folder: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".bin") }.sorted()
    }

    func tokenCount(_ url: URL) throws -> Int { try TokenShard(url: url, vocabularySize: 65536).tokenCount }

    var bookText: String {
        get throws {
            String(
                try String(
                    contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt"),
                    encoding: .utf8
                ).prefix(20_000))
        }
    }

    func testPrepareShardTokensAndValTokens() throws {
        let input = folder.appendingPathComponent("book.txt")
        try Data(try bookText.utf8).write(to: input)
        let out = folder.appendingPathComponent("prepared-sharded")
        _ = try runBatonExpectingSuccess([
            "prepare", input.path, "--tokenizer", "gpt2", "--out", out.path, "--shard-tokens", "1024", "--val-tokens",
            "600",
        ])
        let files = try shardFiles(out)
        let train = files.filter { $0.contains("_train_") }, val = files.filter { $0.contains("_val_") }
        XCTAssertEqual(val.count, 1)
        XCTAssertEqual(
            try tokenCount(out.appendingPathComponent(val[0])), 600, "--val-tokens 600: the val shard holds 600 tokens")
        let trainCounts = try train.map { try tokenCount(out.appendingPathComponent($0)) }
        let trainTokens = trainCounts.reduce(0, +)
        XCTAssertGreaterThan(trainTokens, 2048, "the text must fill several shards for the check to mean anything")
        XCTAssertEqual(train.count, (trainTokens + 1023) / 1024, "train shards = ceil(tokens / --shard-tokens)")
        XCTAssertEqual(Set(trainCounts.dropLast()), [1024], "every train shard but the last holds --shard-tokens")
        // The default split (a tenth of the tokens) differs from 600 for this text.
        XCTAssertNotEqual((trainTokens + 600) / 10, 600)
    }

    func testPrepareField() throws {
        // Each line holds a short "text" and a longer "body": --field body must read the body.
        let bodies = [
            "Of Mans First Disobedience, and the Fruit", "Of that Forbidden Tree, whose mortal tast",
            "Brought Death into the World, and all our woe",
        ]
        let jsonl = bodies.map { #"{"text": "x", "body": "\#($0)"}"# }.joined(separator: "\n") + "\n"
        let bodyOnly = bodies.map { #"{"text": "\#($0)"}"# }.joined(separator: "\n") + "\n"
        let both = folder.appendingPathComponent("both.jsonl"), only = folder.appendingPathComponent("only.jsonl")
        try Data(jsonl.utf8).write(to: both)
        try Data(bodyOnly.utf8).write(to: only)
        let viaField = folder.appendingPathComponent("prepared-field"),
            viaText = folder.appendingPathComponent("prepared-text")
        _ = try runBatonExpectingSuccess([
            "prepare", both.path, "--tokenizer", "gpt2", "--out", viaField.path, "--field", "body", "--val-tokens", "5",
        ])
        _ = try runBatonExpectingSuccess([
            "prepare", only.path, "--tokenizer", "gpt2", "--out", viaText.path, "--val-tokens", "5",
        ])
        let files = try shardFiles(viaField)
        XCTAssertEqual(files, try shardFiles(viaText))
        for name in files {
            XCTAssertEqual(
                try Data(contentsOf: viaField.appendingPathComponent(name)),
                try Data(contentsOf: viaText.appendingPathComponent(name)),
                "\(name): --field body tokenizes the body field")
        }
    }

    func testPrepareName() throws {
        let input = folder.appendingPathComponent("name.txt")
        try Data(try bookText.prefix(3000).utf8).write(to: input)
        let out = folder.appendingPathComponent("prepared-named")
        _ = try runBatonExpectingSuccess(["prepare", input.path, "--out", out.path, "--name", "milton"])
        XCTAssertEqual(try shardFiles(out), ["milton_train_000000.bin", "milton_val_000000.bin"])
    }

    // MARK: plot

    func plot(_ flags: [String]) throws -> String {
        let out = folder.appendingPathComponent("plot-\(UUID().uuidString.prefix(8)).svg")
        _ = try runBatonExpectingSuccess(["plot", run.path, "--out", out.path] + flags)
        return try String(contentsOf: out, encoding: .utf8)
    }

    /// The points of the polyline of `kind` (train-raw or train-smoothed) as (x, y) pixels.
    func polyline(_ svg: String, _ kind: String) throws -> [(Double, Double)] {
        let line = try XCTUnwrap(svg.split(separator: "\n").first { $0.contains("class=\"\(kind)\"") })
        let points = try XCTUnwrap(line.range(of: " points=\"")).upperBound
        let text = line[points...].prefix { $0 != "\"" }
        return text.split(separator: " ").map { pair in
            let xy = pair.split(separator: ",").map { Double($0)! }
            return (xy[0], xy[1])
        }
    }

    /// The x-axis tick labels: the texts on the line under the plot area (y 498.0).
    func xTicks(_ svg: String) -> [Double] {
        svg.split(separator: "\n").compactMap { line -> Double? in
            guard let start = line.range(of: "y=\"498.0\" text-anchor=\"middle\">") else { return nil }
            return Double(line[start.upperBound...].prefix { $0 != "<" })
        }
    }

    func testPlotXTokens() throws {
        let steps = try plot([]), tokens = try plot(["--x", "tokens"])
        // 3 steps of 4 x 8 tokens: the axis runs to 3 steps, or to 96 tokens.
        XCTAssertEqual(xTicks(steps).max(), 3)
        let tokenMax = try XCTUnwrap(xTicks(tokens).max())
        XCTAssertGreaterThan(tokenMax, 48, "the tokens axis reaches toward 3 x 32 tokens")
        XCTAssertLessThanOrEqual(tokenMax, 96)
        XCTAssertTrue(tokens.contains("Loss by tokens seen"))
        XCTAssertFalse(steps.contains("Loss by tokens seen"))
    }

    func testPlotLogY() throws {
        let linear = try plot([]), log = try plot(["--log-y"])
        XCTAssertTrue(log.contains("(log scale)"))
        XCTAssertFalse(linear.contains("(log scale)"))
        let linearY = try polyline(linear, "train-raw").map(\.1), logY = try polyline(log, "train-raw").map(\.1)
        XCTAssertEqual(linearY.count, 3)
        XCTAssertNotEqual(linearY, logY, "a log axis places the losses elsewhere")
    }

    func testPlotSmoothing() throws {
        let none = try plot(["--smoothing", "0"])
        let rawPoints = try polyline(none, "train-raw"), flat = try polyline(none, "train-smoothed")
        XCTAssertEqual(flat.map(\.0), rawPoints.map(\.0))
        XCTAssertEqual(flat.map(\.1), rawPoints.map(\.1), "smoothing 0 is the raw curve")
        let byDefault = try polyline(try plot([]), "train-smoothed").map(\.1)
        let half = try polyline(try plot(["--smoothing", "0.5"]), "train-smoothed").map(\.1)
        XCTAssertNotEqual(byDefault, rawPoints.map(\.1))
        XCTAssertNotEqual(half, byDefault, "0.5 smooths less than the default 0.9")
        XCTAssertNotEqual(half, rawPoints.map(\.1))
    }

    // MARK: bench

    func testBenchBatchAndSteps() throws {
        let tiny = [
            "bench", "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "8", "--warmup-steps", "0",
            "--device", "cpu",
        ]
        let result = try runBatonExpectingSuccess(tiny + ["--batch", "3", "--steps", "2", "--profile"])
        XCTAssertTrue(result.stdout.contains("T=8 B=3 V=256"), result.stdout)
        XCTAssertTrue(result.stdout.contains("profile: 2 more steps"), result.stdout)
        XCTAssertTrue(result.stdout.contains("tokens_per_s: "), result.stdout)
    }
}
