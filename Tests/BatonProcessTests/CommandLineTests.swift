import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The `baton` binary as a user meets it: each bad input gets one line on stderr that names the
/// file or flag, a non-zero exit, and no crash trace.
final class CommandLineTests: FolderTestCase {
    let tinyModel = ["--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "8", "--batch", "2"]

    func assertOneLineError(
        _ arguments: [String], mentions expected: [String], status: Int32? = nil,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let result = try runBaton(arguments)
        XCTAssertNotEqual(result.status, 0, "\(arguments) should fail", file: file, line: line)
        if let status { XCTAssertEqual(result.status, status, file: file, line: line) }
        let lines = result.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "one line expected, got: \(result.stderr)", file: file, line: line)
        XCTAssert(result.stderr.hasPrefix("baton: error: "), result.stderr, file: file, line: line)
        for text in expected {
            XCTAssert(result.stderr.contains(text), "'\(text)' missing from: \(result.stderr)", file: file, line: line)
        }
        for trace in ["Fatal error", "Stack dump", "Backtrace", "Current stack trace"] {
            XCTAssertFalse(result.stderr.contains(trace), file: file, line: line)
        }
    }

    func shardFolder(_ name: String, train: (URL) throws -> Void) throws -> String {
        let data = folder.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try train(data.appendingPathComponent("x_train_000000.bin"))
        return data.path
    }

    func testBadFlagsAreUsageErrors() throws {
        try assertOneLineError(["train", "--bogus", "1"], mentions: ["--bogus", "baton train --help"], status: 2)
        try assertOneLineError(["train", "--steps", "ten"], mentions: ["--steps", "ten"], status: 2)
        try assertOneLineError(["train", "--lr", "fast"], mentions: ["--lr", "fast"], status: 2)
        try assertOneLineError(["train", "--steps"], mentions: ["--steps", "needs a value"], status: 2)
        try assertOneLineError(["train", "--steps", "0"], mentions: ["--steps"])
        try assertOneLineError(["train", "--embd", "30", "--heads", "4"], mentions: ["--embd", "--heads"])
        try assertOneLineError(["train", "--device", "tpu"], mentions: ["--device", "tpu"], status: 2)
        try assertOneLineError(["frobnicate"], mentions: ["frobnicate", "baton --help"], status: 2)
        try assertOneLineError(["sample"], mentions: ["PATH"], status: 2)
        try assertOneLineError(["eval", "somewhere"], mentions: ["--data"], status: 2)
        // A word where a command takes none (a value given to a switch, a typo) is refused, not ignored.
        for command in ["train", "bench", "selftest", "torture"] {
            try assertOneLineError(
                [command, "3"], mentions: ["unexpected argument '3'", "baton \(command) --help"], status: 2)
        }
        try assertOneLineError(["bench", "--profile", "yes"], mentions: ["unexpected argument 'yes'"], status: 2)
    }

    /// sample --length has an upper bound (1,000,000 tokens, in --help): beyond it, a usage error
    /// before the model is read, not a run that goes on until killed.
    func testSampleLengthIsBounded() throws {
        let missing = folder.appendingPathComponent("missing").path
        for length in ["99999999999", "1000001"] {
            try assertOneLineError(
                ["sample", missing, "--length", length], mentions: ["--length", "1000000"], status: 2)
        }
        // The bound itself is accepted: the missing PATH is what fails then.
        try assertOneLineError(["sample", missing, "--length", "1000000"], mentions: [missing], status: 1)
        XCTAssert(try runBaton(["sample", "--help"]).stdout.contains("0 to 1000000"))
    }

    func testBadDataIsNamed() throws {
        try assertOneLineError(
            ["train", "--data", folder.appendingPathComponent("nope").path], mentions: ["--data", "nope"])
        let magic = try shardFolder("magic") {
            try writeRawShard($0, magic: 1, count: 100, tokens: [UInt16](repeating: 1, count: 100))
        }
        try assertOneLineError(["train", "--data", magic] + tinyModel, mentions: ["x_train_000000.bin", "magic"])
        let truncated = try shardFolder("truncated") {
            try writeRawShard($0, count: 100, tokens: [UInt16](repeating: 1, count: 60))
        }
        try assertOneLineError(
            ["train", "--data", truncated] + tinyModel, mentions: ["x_train_000000.bin", "truncated"])
        let vocab = try shardFolder("vocab") {
            try writeRawShard($0, count: 100, tokens: [UInt16](repeating: 999, count: 100))
        }
        try assertOneLineError(
            ["train", "--data", vocab] + tinyModel, mentions: ["x_train_000000.bin", "token 999", "--vocab-size"])
        let short = try shardFolder("short") { try TokenShard.write(tokens: [UInt16](repeating: 3, count: 12), to: $0) }
        try assertOneLineError(["train", "--data", short] + tinyModel, mentions: [short, "fewer than one batch"])
        try assertOneLineError(
            ["eval", folder.appendingPathComponent("none").path, "--data", "x.bin"], mentions: ["none"])
    }

    func testCudaRequestFailsClearlyAndAutoFallsBackToCPU() throws {
        // Children do not inherit BATON_CUDA_LIBRARY (runBaton): only a library beside `baton` opens CUDA.
        let beside = TestPaths.batonExecutable.deletingLastPathComponent().appendingPathComponent(
            CUDABackendLoader.libraryName
        ).path
        try XCTSkipIf(
            FileManager.default.fileExists(atPath: beside),
            "skipped: a CUDA backend sits beside baton (\(beside)), so --device cuda may open")
        try assertOneLineError(["bench", "--device", "cuda"], mentions: ["--device cuda", "CUDA"])
        let auto = try runBaton(["bench", "--device", "auto", "--steps", "1", "--warmup-steps", "0"] + tinyModel)
        XCTAssertEqual(auto.status, 0, auto.stderr)
        XCTAssert(auto.stdout.contains("auto picked cpu"), auto.stdout)
        XCTAssert(auto.stdout.contains("tokens_per_s:"), auto.stdout)
    }

    /// `bench --profile` times each op of a step (the device waits after each): every op a step
    /// runs is a row, with its calls per step, and the rows fit inside the steps' wall time.
    func testBenchProfileTimesEachOp() throws {
        let layers = 3
        let result = try runBaton([
            "bench", "--device", "cpu", "--layers", "\(layers)", "--heads", "2", "--embd", "32", "--seq-len", "16",
            "--batch", "2", "--steps", "2", "--warmup-steps", "1", "--profile",
        ])
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = result.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        func row(_ op: String) -> [String]? { rows.first { $0.first == op } }
        let expectedCalls = [
            "linear_forward": 4 * layers, "matmul_gelu_backward": layers, "attention_forward": layers,
            "attention_backward": layers,
            "residual_layernorm_forward": 2 * layers, "layernorm_forward": 1, "layernorm_backward": 2 * layers + 1,
            "softmax_crossentropy": 1, "encoder_forward": 1, "encoder_backward": 1, "adamw_update": 1,
            "global_norm_squared": 1,
        ]
        for (op, calls) in expectedCalls {
            let cells = try XCTUnwrap(row(op), "no row for \(op): \(result.stdout)")
            XCTAssertEqual(Double(cells[1]), Double(calls), "\(op) calls a step")
        }
        let opRows = rows.filter { $0.count == 4 && $0[3].hasSuffix("%") }
        let sum = opRows.compactMap { Double($0[2]) }.reduce(0, +)
        let wall = try XCTUnwrap(Double(try XCTUnwrap(row("wall"), result.stdout).last ?? ""))
        print("profile: ops \(sum) ms/step, wall \(wall) ms/step")
        // Against the steps' wall time, timed around them outside the profiler: the ops run one
        // after another inside it, so they add up to at most it (plus the cells' rounding), and to
        // at least half of it (the rest is the host's work between ops).
        XCTAssertLessThanOrEqual(
            sum, wall + 0.001 * Double(opRows.count), "the ops take more than the steps' wall time")
        XCTAssertGreaterThanOrEqual(sum, 0.5 * wall, "the ops miss most of the steps' wall time")
    }

    func testHelpListsTheFlags() throws {
        let top = try runBaton(["--help"])
        XCTAssertEqual(top.status, 0)
        for command in ["train", "sample", "eval", "prepare", "bench"] { XCTAssert(top.stdout.contains(command)) }
        let train = try runBaton(["train", "--help"])
        for flag in [
            "--data", "--out", "--device", "--steps", "--batch", "--seq-len", "--layers", "--heads", "--embd", "--lr",
            "--min-lr", "--warmup", "--weight-decay", "--grad-clip", "--grad-accum", "--seed", "--eval-every",
        ] {
            XCTAssert(train.stdout.contains(flag), "baton train --help lacks \(flag)")
        }
    }

    /// prepare -> train -> eval -> sample, on a small text, through the binary.
    func testPrepareTrainEvalSample() throws {
        let text = folder.appendingPathComponent("tiny.txt")
        try String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 60).write(
            to: text, atomically: true, encoding: .utf8)
        let data = folder.appendingPathComponent("shards").path, run = folder.appendingPathComponent("run").path
        let prepared = try runBaton(["prepare", text.path, "--out", data])
        XCTAssertEqual(prepared.status, 0, prepared.stderr)
        let trained = try runBaton(
            [
                "train", "--data", data, "--out", run, "--steps", "30", "--eval-every", "10", "--eval-batches", "2",
                "--warmup", "5", "--lr", "3e-3", "--device", "cpu",
            ] + tinyModel)
        XCTAssertEqual(trained.status, 0, trained.stderr)
        XCTAssert(trained.stdout.contains("step 30/30"), trained.stdout)
        XCTAssert(trained.stdout.contains("val loss"), trained.stdout)
        let metrics = try MetricsLog.read(URL(fileURLWithPath: run).appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(metrics.map(\.step), Array(1...30))
        XCTAssertEqual(metrics.compactMap(\.valLoss).count, 3)
        XCTAssertLessThan(
            metrics.last!.loss, metrics.first!.loss - 1, "30 steps on repetitive text should cut the loss")
        let config =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: run).appendingPathComponent("config.json")))
            as? [String: Any]
        XCTAssertNotNil(config?["config"])

        let evaluated = try runBaton([
            "eval", run, "--data", data + "/corpus_val_000000.bin", "--sequences", "10", "--device", "cpu",
        ])
        XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
        let lastLine = evaluated.stdout.split(separator: "\n").last ?? ""
        XCTAssert(lastLine.hasPrefix("loss: "), evaluated.stdout)
        let loss = Float(lastLine.dropFirst(6))!
        XCTAssertLessThan(loss, metrics.first!.loss)

        // eval's number is the model's loss on exactly those sequences.
        let model = try ModelWeights.openModel(path: run, device: Device.cpu())
        let shard = try TokenShard(url: URL(fileURLWithPath: data + "/corpus_val_000000.bin"), vocabularySize: 256)
        let tokens = try shard.tokens(start: 0, count: 10 * 8 + 1)
        let direct = try model.forward(inputs: Array(tokens[0..<80]), targets: Array(tokens[1...80]), B: 10, T: 8)
        XCTAssertEqual(loss, direct, accuracy: 1e-5)

        let sampled = try runBaton(["sample", run, "--prompt", "the ", "--length", "40", "--seed", "3"])
        XCTAssertEqual(sampled.status, 0, sampled.stderr)
        XCTAssert(sampled.stdout.hasPrefix("the "))
        XCTAssertGreaterThanOrEqual(sampled.stdout.utf8.count, 40)

        try assertOneLineError(
            ["train", "--data", data, "--out", run] + tinyModel,
            mentions: [run, "already holds a run", "--resume", "--overwrite"])
    }
}

/// Messages that name what the user can act on: the flags the command accepts, the path given.
extension CommandLineTests {
    /// Tiny shards and a tiny run trained `steps` steps on them: their paths.
    func trainedTinyRun(steps: Int) throws -> (data: String, run: String) {
        let data = try makeTinyShards(in: folder), run = folder.appendingPathComponent("run").path
        let trained = try runBaton(
            ["train", "--data", data, "--out", run, "--steps", "\(steps)", "--eval-batches", "1", "--device", "cpu"]
                + tinyModel)
        XCTAssertEqual(trained.status, 0, trained.stderr)
        return (data, run)
    }

    func testEvalMessagesNameWhatEvalAccepts() throws {
        let (data, run) = try trainedTinyRun(steps: 1)
        // A token the model's vocabulary (256) lacks: eval has no --vocab-size to pass.
        let wide = folder.appendingPathComponent("wide_val_000000.bin")
        try writeRawShard(wide, count: 100, tokens: [UInt16](repeating: 300, count: 100))
        try assertOneLineError(
            ["eval", run, "--data", wide.path, "--device", "cpu"], mentions: [wide.path, "300", "vocabulary 256"])
        let wrong = try runBaton(["eval", run, "--data", wide.path, "--device", "cpu"])
        XCTAssertFalse(wrong.stderr.contains("--vocab-size"), wrong.stderr)
        // A folder where a shard file is asked for.
        try assertOneLineError(
            ["eval", run, "--data", data, "--device", "cpu"],
            mentions: ["--data", data, "is a folder", "t_val_000000.bin"])
        let folderError = try runBaton(["eval", run, "--data", data, "--device", "cpu"])
        XCTAssertFalse(folderError.stderr.contains("4096"), folderError.stderr)
    }

    func testPlotIntoAMissingFolderNamesTheOutPath() throws {
        let (_, run) = try trainedTinyRun(steps: 1)
        let out = folder.appendingPathComponent("missing/dir/x.svg").path
        try assertOneLineError(["plot", run, "--out", out], mentions: ["--out", out, "does not exist"], status: 1)
        let result = try runBaton(["plot", run, "--out", out])
        XCTAssertFalse(result.stderr.contains(".tmp-"), result.stderr)
    }
}

extension CommandLineTests {
    /// A checkpoint whose state.json holds a bad config value: the file and its key are named,
    /// not a flag the user never passed, and it is not a usage error.
    func testABadValueInStateJSONNamesTheFileNotAFlag() throws {
        let (data, run) = try trainedTinyRun(steps: 2)
        let checkpoint = CheckpointStore(runFolder: URL(fileURLWithPath: run)).url(step: 2)
        let stateURL = checkpoint.appendingPathComponent("state.json")
        let text = try String(contentsOf: stateURL, encoding: .utf8)
        XCTAssert(text.contains("\"heads\" : 2"), text)
        try text.replacingOccurrences(of: "\"heads\" : 2", with: "\"heads\" : 3").write(
            to: stateURL, atomically: true, encoding: .utf8)
        try assertOneLineError(
            ["train", "--data", data, "--out", run, "--resume", checkpoint.path, "--device", "cpu"],
            mentions: [
                checkpoint.path, "state.json", "config.model.channels 16 is not divisible by config.model.heads 3",
            ], status: 1)
        let result = try runBaton([
            "train", "--data", data, "--out", run, "--resume", checkpoint.path, "--device", "cpu",
        ])
        XCTAssertFalse(result.stderr.contains("--heads"), result.stderr)
    }
}
