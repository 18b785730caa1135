import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// `baton train --init-from HF_DIR` with Fixtures/hf-gpt2-tiny (a random GPT-2 saved by
/// transformers; scripts/fixtures/make_hf_fixture.py): Baton computes transformers' logits and loss, a run
/// started from it resumes without the folder, exporting its first checkpoint gives back the same
/// tensors, and what Baton cannot load is a one-line error.
final class HuggingFaceImportTests: XCTestCase {
    let source = TestPaths.fixtures.appendingPathComponent("hf-gpt2-tiny")
    var folder: URL!
    override func setUpWithError() throws { folder = try TestPaths.temporaryFolder("hf-in") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func testLogitsAndLossMatchTransformers() throws {
        let hf = try HuggingFaceModel(folder: source)
        XCTAssertEqual(hf.config, GPTConfig(contextLength: 32, vocabularySize: 256, layers: 2, heads: 4, channels: 32))
        let model = try GPT(config: hf.config, device: Device.cpu(threads: 2))
        try hf.load(into: model)
        let expected = try SafeTensors.read(source.appendingPathComponent("expected.safetensors"))
        let inputs = try expected.integers("inputs").map(Int32.init),
            targets = try expected.integers("targets").map(Int32.init)
        assertClose(
            try model.logits(inputs: inputs, B: 2, T: 20), try expected.floats("logits"), rtol: 1e-5,
            "logits against transformers")
        let loss = try model.forward(inputs: inputs, targets: targets, B: 2, T: 20),
            reference = try expected.floats("loss")[0]
        XCTAssertLessThanOrEqual(
            abs(loss - reference), 1e-5 * reference, "loss \(loss) against transformers \(reference)")
    }

    func tensors(_ url: URL) throws -> [String: [Float]] {
        let file = try SafeTensors.read(url)
        var result: [String: [Float]] = [:]
        for name in file.names {
            result[name.hasPrefix("transformer.") ? name : "transformer." + name] = try file.floats(name)
        }
        return result
    }

    func testARunFromAHuggingFaceFolderResumesWithoutItAndExportsItBack() throws {
        let copy = folder.appendingPathComponent("hf")
        try FileManager.default.copyItem(at: source, to: copy)
        for name in ["vocab.json", "merges.txt"] {  // a source folder with a tokenizer: the export carries it on
            try FileManager.default.copyItem(
                at: TestPaths.repositoryRoot.appendingPathComponent("data/gpt2-tokenizer/\(name)"),
                to: copy.appendingPathComponent(name))
        }
        let data = try makeTinyShards(in: folder), run = folder.appendingPathComponent("run").path
        let common = ["--data", data, "--out", run, "--batch", "4", "--device", "cpu", "--eval-batches", "1"]
        let started = try runBaton(["train", "--init-from", copy.path, "--steps", "6", "--stop-at", "0"] + common)
        XCTAssertEqual(started.status, 0, started.stderr)
        XCTAssert(started.stdout.contains("init: weights from"), started.stdout)
        let state = try CheckpointStore.verify(CheckpointStore(runFolder: URL(fileURLWithPath: run)).url(step: 0))
        XCTAssertEqual(state.config.initFrom?.files.keys.sorted(), ["model.safetensors"])
        XCTAssertEqual(state.config.model.layers, 2)
        // export(init-from(X)) gives back X's tensors, bit for bit.
        let exported = folder.appendingPathComponent("exported")
        XCTAssertEqual(try runBaton(["export", run, "--hf", exported.path]).status, 0)
        XCTAssertEqual(
            try Data(contentsOf: exported.appendingPathComponent("merges.txt")),
            try Data(contentsOf: copy.appendingPathComponent("merges.txt")))
        let original = try tensors(copy.appendingPathComponent("model.safetensors"))
        let roundTrip = try tensors(exported.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(Set(roundTrip.keys), Set(original.keys).subtracting(["transformer.lm_head.weight"]))
        for (name, values) in roundTrip {
            XCTAssertEqual(values.map(\.bitPattern), original[name]?.map(\.bitPattern), name)
        }
        // The folder is not needed to go on.
        try FileManager.default.removeItem(at: copy)
        let resumed = try runBaton(["train", "--resume", "auto"] + common)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(
            try MetricsLog.read(URL(fileURLWithPath: run).appendingPathComponent("metrics.jsonl")).map(\.step),
            Array(1...6))
    }

    func assertOneLine(
        _ arguments: [String], mentions words: [String], file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let result = try runBaton(arguments)
        XCTAssertNotEqual(result.status, 0, file: file, line: line)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr, file: file, line: line)
        for word in words {
            XCTAssert(result.stderr.contains(word), "'\(word)' missing from: \(result.stderr)", file: file, line: line)
        }
    }

    func testWhatCannotBeLoadedIsAOneLineError() throws {
        let data = try makeTinyShards(in: folder), run = folder.appendingPathComponent("run").path
        let common = ["--data", data, "--out", run, "--batch", "4", "--steps", "2", "--device", "cpu"]
        try assertOneLine(
            ["train", "--init-from", source.path, "--layers", "4"] + common,
            mentions: ["--layers 4 conflicts with", "config.json", "says 2"])
        let binOnly = folder.appendingPathComponent("bin-only")
        try FileManager.default.createDirectory(at: binOnly, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: source.appendingPathComponent("config.json"), to: binOnly.appendingPathComponent("config.json"))
        try Data([0x80, 0x02]).write(to: binOnly.appendingPathComponent("pytorch_model.bin"))
        try assertOneLine(
            ["train", "--init-from", binOnly.path] + common,
            mentions: ["pytorch_model.bin", "safetensors only", "save_pretrained"])
        let untied = folder.appendingPathComponent("untied")
        try FileManager.default.copyItem(at: source, to: untied)
        let config = try String(contentsOf: untied.appendingPathComponent("config.json"), encoding: .utf8)
        try config.replacingOccurrences(of: "\"tie_word_embeddings\": true", with: "\"tie_word_embeddings\": false")
            .write(to: untied.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        try assertOneLine(["train", "--init-from", untied.path] + common, mentions: ["untied"])
        try assertOneLine(
            ["train", "--init-from", source.path, "--resume", "auto"] + common, mentions: ["--init-from starts a run"])
    }
}

extension HuggingFaceImportTests {
    /// Sharded safetensors with their index (as save_pretrained writes large models) load the same.
    func testShardedSafetensorsWithAnIndexLoadTheSame() throws {
        let sharded = folder.appendingPathComponent("sharded")
        try FileManager.default.createDirectory(at: sharded, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: source.appendingPathComponent("config.json"), to: sharded.appendingPathComponent("config.json"))
        let whole = try SafeTensors.read(source.appendingPathComponent("model.safetensors"))
        var map: [String: String] = [:]
        for (part, names) in [
            whole.names.filter { $0.contains(".h.0.") }, whole.names.filter { !$0.contains(".h.0.") },
        ].enumerated() {
            let file = "model-0000\(part + 1)-of-00002.safetensors"
            let flat = try names.flatMap { try whole.floats($0) }
            _ = try flat.withUnsafeBufferPointer { values in
                try TensorFile.write(
                    sharded.appendingPathComponent(file),
                    entries: names.map { TensorFile.Entry(name: $0, shape: whole.entries[$0]!.shape) },
                    segments: [values])
            }
            for name in names { map[name] = file }
        }
        try JSONSerialization.data(withJSONObject: ["weight_map": map]).write(
            to: sharded.appendingPathComponent("model.safetensors.index.json"))
        let a = try HuggingFaceModel(folder: source), b = try HuggingFaceModel(folder: sharded)
        XCTAssertEqual(
            b.checksums.keys.sorted(), ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        let one = try GPT(config: a.config, device: Device.cpu(threads: 1)),
            two = try GPT(config: b.config, device: Device.cpu(threads: 1))
        try a.load(into: one)
        try b.load(into: two)
        XCTAssertEqual(try one.device.download(one.parameters), try two.device.download(two.parameters))
    }
}

extension HuggingFaceImportTests {
    /// A bad value in config.json names the file and its key, not flags the user never passed.
    func testABadConfigValueNamesConfigJSONAndItsKey() throws {
        let data = try makeTinyShards(in: folder), run = folder.appendingPathComponent("run").path
        let common = ["--data", data, "--out", run, "--batch", "4", "--steps", "2", "--device", "cpu"]
        for (key, value, words) in [
            ("n_head", "3", ["n_head 3", "n_embd 32"]), ("n_layer", "0", ["n_layer"]),
            ("n_positions", "100000", ["n_positions"]),
            ("vocab_size", "2147483648", ["vocab_size"]),
        ] {
            let bad = folder.appendingPathComponent("bad-\(key)")
            try FileManager.default.copyItem(at: source, to: bad)
            let configURL = bad.appendingPathComponent("config.json")
            var config = try XCTUnwrap(
                try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
            config[key] = Int(value)!
            try JSONSerialization.data(withJSONObject: config).write(to: configURL)
            let result = try runBaton(["train", "--init-from", bad.path] + common)
            XCTAssertEqual(result.status, 1, "a file's bad value is not a usage error: \(result.stderr)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
            for word in [configURL.path] + words {
                XCTAssert(result.stderr.contains(word), "'\(word)' missing from: \(result.stderr)")
            }
            for flag in ["--heads", "--layers", "--embd", "--seq-len", "--vocab-size"] {
                XCTAssertFalse(result.stderr.contains(flag), "names \(flag), which was not passed: \(result.stderr)")
            }
        }
    }
}
