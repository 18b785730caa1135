import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// Each setting is declared once (TrainingConfig's @Setting properties): the flags, --help,
/// config.json, --config files and the checks follow from the declarations.
final class SettingDeclarationTests: TinyRunTestCase {
    func testEverySettingHasOneFlagAndIsAKeyOfConfigJSON() throws {
        let flags = TrainingConfig.settings.map(\.flag)
        XCTAssertEqual(Set(flags).count, flags.count, "a flag declared twice")
        // A config with every optional setting set writes every setting's key.
        var config = TrainingConfig()
        config.epochs = 2
        config.globalBatch = 24
        config.reduce = .fast
        config.precision = .bf16
        config.schedule = .wsd
        config.decayFraction = 0.3
        config.skipLossZ = 5
        config.skipGradientZ = 3.5
        config.hellaswag = "hellaswag_val.jsonl"
        config.hellaswagEvery = 5
        config.zero = 1
        config.recompute = .activation
        config.model.kvHeads = 2
        config.model.intermediateSize = 40
        config.model.tieEmbeddings = true
        let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(config)) as! [String: Any]
        let model = object["model"] as! [String: Any]
        let written = Set(object.keys.filter { $0 != "model" }).union(model.keys.map { "model.\($0)" })
        XCTAssertEqual(written.subtracting(["epsilon", "initFrom"]), Set(TrainingConfig.settings.map(\.key)))
        // Unset optional settings write no key, as optional properties would not.
        let defaults = try JSONSerialization.jsonObject(with: JSONEncoder().encode(TrainingConfig())) as! [String: Any]
        XCTAssertNil(defaults["reduce"])
        XCTAssertNil(defaults["epochs"])
    }

    func testHelpPrintsEachDefaultFromTheDeclaration() throws {
        let help = try runBaton(["train", "--help"]).stdout
        XCTAssert(
            help.contains("(default 12)") && help.contains("(default 1e-3)") && help.contains("(default 0.99)"), help)
        for entry in TrainingConfig.settings {
            XCTAssert(help.contains("  \(entry.flag) \(entry.placeholder) "), "\(entry.flag) is not in --help")
            XCTAssertFalse(entry.help.contains("{}"))
        }
    }

    func testAModeIsReadFromItsWordsAndAnUnknownWordIsNamed() throws {
        XCTAssertEqual(ReduceMode(settingText: "fast"), .fast)
        XCTAssertNil(ReduceMode(settingText: "quick"))
        let state = #"{"reduce": "quick"}"#
        XCTAssertThrowsError(try JSONDecoder().decode(TrainingConfig.self, from: Data(state.utf8)))
    }

    /// `baton train --config RUN/config.json --out NEW` repeats RUN bit for bit; flags override
    /// the file; a bad key or value is one line naming the file and the key, exit 2.
    func testARunsConfigJSONRepeatsTheRun() throws {
        let first = folder.appendingPathComponent("first"), second = folder.appendingPathComponent("second")
        let machine = ["--device", "cpu", "--threads", "2"]
        let started = try runBaton(
            ["train", "--out", first.path] + tinyModel + [
                "--batch", "4", "--epochs", "2", "--lr", "3e-3", "--warmup", "2", "--eval-every", "0", "--log-every",
                "100",
                "--precision", "bf16", "--on-nonfinite", "skip", "--save-every", "3",
            ] + machine)
        XCTAssertEqual(started.status, 0, started.stderr)
        let configFile = first.appendingPathComponent("config.json").path
        // From another directory, where the default data set is not: the file names the data.
        let repeated = try runBaton(["train", "--config", configFile, "--out", second.path] + machine, in: folder)
        XCTAssertEqual(repeated.status, 0, repeated.stderr)
        let a = CheckpointStore(runFolder: first), b = CheckpointStore(runFolder: second)
        XCTAssertEqual(a.steps(), b.steps())
        XCTAssertFalse(a.steps().isEmpty)
        for step in a.steps() {
            for name in [CheckpointStore.modelFile, CheckpointStore.optimizerFile] {
                XCTAssert(
                    try Data(contentsOf: a.url(step: step).appendingPathComponent(name))
                        == Data(contentsOf: b.url(step: step).appendingPathComponent(name)),
                    "\(name) of step \(step) differs")
            }
        }
        XCTAssertEqual(try RunFolder(url: first).readConfig(), try RunFolder(url: second).readConfig())

        // Flags override the file.
        let third = folder.appendingPathComponent("third")
        let overridden = try runBaton(
            ["train", "--config", configFile, "--out", third.path, "--steps", "2", "--lr", "1e-3"] + machine)
        XCTAssertEqual(overridden.status, 0, overridden.stderr)
        let recorded = try XCTUnwrap(RunFolder(url: third).readConfig())
        XCTAssertEqual(recorded.steps, 2)
        XCTAssertNil(recorded.epochs, "--steps given alone replaces the file's --epochs")
        XCTAssertEqual(recorded.learningRate, 1e-3)
        XCTAssertEqual(recorded.precision, .bf16)

        // Bad files: one line naming the file and the key, exit 2, nothing written.
        for (text, named) in [
            (#"{"batchSize": 4, "learningrate": 0.1}"#, "unknown key learningrate"),
            (#"{"batchSize": "four"}"#, "batchSize expects a whole number"),
            (#"{"reduce": "quick"}"#, "reduce expects exact or fast"),
            (#"{"model": {"heads": 0}}"#, "model.heads must be at least 1, got 0"),
            (#"{"keepLast": 0}"#, "keepLast must be at least 1, got 0"),
            (#"{"config": {"beta1": 1.5}, "baton_version": "x"}"#, "config.beta1 must be in [0, 1), got 1.5"),
            ("[1, 2]", "is not a JSON object"),
        ] {
            let file = folder.appendingPathComponent("bad.json")
            try Data(text.utf8).write(to: file)
            let out = folder.appendingPathComponent("bad-run")
            let result = try runBaton(["train", "--config", file.path, "--out", out.path, "--data", data] + machine)
            XCTAssertEqual(result.status, 2, text)
            XCTAssert(result.stderr.contains("--config \(file.path): \(named)"), "\(text): \(result.stderr)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "\(text): a refused run left a folder")
        }
    }

    /// A run started from a Hugging Face folder: its config.json starts from that folder again, to
    /// the same bytes; once the folder's weights change, the file is refused in one line (exit 2),
    /// and --init-from starts from them anyway.
    func testAConfigRecordedFromAHuggingFaceStartNeedsTheSameWeights() throws {
        let hf = folder.appendingPathComponent("hf")
        try FileManager.default.copyItem(at: TestPaths.fixtures.appendingPathComponent("hf-gpt2-tiny"), to: hf)
        let flags: [String] = ["--data", data, "--batch", "4", "--steps", "3", "--eval-batches", "1"] + onCPU
        let first = folder.appendingPathComponent("first"), second = folder.appendingPathComponent("second")
        try baton(["train", "--init-from", hf.path, "--out", first.path] + flags)
        let configFile = first.appendingPathComponent("config.json").path
        let repeated = try baton(["train", "--config", configFile, "--out", second.path] + onCPU)
        XCTAssert(repeated.stdout.contains("init: weights from \(hf.path)"), repeated.stdout)
        let model = { (run: URL) in
            try Data(
                contentsOf: CheckpointStore(runFolder: run).url(step: 3).appendingPathComponent("model.safetensors"))
        }
        XCTAssert(try model(first) == model(second), "the recorded start repeats the run")
        let weights = hf.appendingPathComponent("model.safetensors")
        try flipByte(in: weights, at: try Data(contentsOf: weights).count - 4)  // the last weight's lowest byte
        let third = folder.appendingPathComponent("third")
        let refused = try runBaton(["train", "--config", configFile, "--out", third.path] + onCPU)
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssert(refused.stderr.contains("not the ones the run recorded"), refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: third.path))
        try baton(["train", "--config", configFile, "--init-from", hf.path, "--out", third.path] + onCPU)
    }
}
