import Foundation
import XCTest
@testable import Baton

/// `baton export --hf DIR`: the files transformers needs, with GPT-2's config fields, the
/// checkpoint's tensors as they are, the tokenizer for BPE runs, none for byte-level ones; an
/// existing folder refused without --overwrite. (scripts/check_hf_export.py loads the folder with
/// transformers itself; see the README for its output.)
final class HuggingFaceExportTests: XCTestCase {
    var folder: URL!
    override func setUpWithError() throws { folder = try TestPaths.temporaryFolder("export") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func json(_ url: URL) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    func testAGPT2RunExportsAHuggingFaceFolder() throws {
        let text = String(try String(contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt"), encoding: .utf8).prefix(20_000))
        let input = folder.appendingPathComponent("t.txt")
        try Data(text.utf8).write(to: input)
        let shards = folder.appendingPathComponent("shards").path, run = folder.appendingPathComponent("run").path
        XCTAssertEqual(try runBaton(["prepare", input.path, "--tokenizer", "gpt2", "--out", shards, "--shard-tokens", "2048", "--val-tokens", "600"]).status, 0)
        let trained = try runBaton(["train", "--data", shards, "--out", run, "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "16",
                                    "--batch", "2", "--steps", "2", "--eval-batches", "1", "--device", "cpu"])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let hf = folder.appendingPathComponent("hf")
        let exported = try runBaton(["export", run, "--hf", hf.path])
        XCTAssertEqual(exported.status, 0, exported.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: hf.path).sorted()
        XCTAssertEqual(names, ["config.json", "generation_config.json", "merges.txt", "model.safetensors", "special_tokens_map.json",
                               "tokenizer_config.json", "vocab.json"])
        let config = try json(hf.appendingPathComponent("config.json"))
        XCTAssertEqual(config["model_type"] as? String, "gpt2")
        XCTAssertEqual(config["architectures"] as? [String], ["GPT2LMHeadModel"])
        XCTAssertEqual(config["activation_function"] as? String, "gelu_new")
        XCTAssertEqual(config["layer_norm_epsilon"] as? Double, 1e-5)
        XCTAssertEqual(config["tie_word_embeddings"] as? Bool, true)
        for (key, value) in [("n_layer", 1), ("n_head", 2), ("n_embd", 16), ("n_positions", 16), ("vocab_size", 50257), ("eos_token_id", 50256)] {
            XCTAssertEqual(config[key] as? Int, value, key)
        }
        XCTAssertEqual(try json(hf.appendingPathComponent("tokenizer_config.json"))["tokenizer_class"] as? String, "GPT2Tokenizer")
        let checkpoint = CheckpointStore(runFolder: URL(fileURLWithPath: run)).url(step: 2)
        XCTAssertEqual(try Data(contentsOf: hf.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: checkpoint.appendingPathComponent("model.safetensors")))
        XCTAssertEqual(try SafeTensors.read(hf.appendingPathComponent("model.safetensors")).entries["transformer.wte.weight"]?.shape, [50257, 16],
                       "exactly the real vocabulary rows")
        XCTAssertNoThrow(try GPT2Tokenizer(folder: hf))
        // An existing folder: refused in one line, then replaced with --overwrite.
        let again = try runBaton(["export", run, "--hf", hf.path])
        XCTAssertEqual(again.status, 1)
        XCTAssert(again.stderr.contains("already exists; pass --overwrite"), again.stderr)
        XCTAssertEqual(try runBaton(["export", checkpoint.path, "--hf", hf.path, "--overwrite"]).status, 0)
        let left = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(left, [], "no temporary folder is left")
    }

    func testAByteLevelRunExportsWithoutATokenizer() throws {
        let data = try makeTinyShards(in: folder), run = folder.appendingPathComponent("run").path
        XCTAssertEqual(try runBaton(["train", "--data", data, "--out", run, "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "8",
                                     "--batch", "4", "--steps", "2", "--device", "cpu"]).status, 0)
        let hf = folder.appendingPathComponent("hf")
        let exported = try runBaton(["export", run, "--hf", hf.path])
        XCTAssertEqual(exported.status, 0, exported.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: hf.path).sorted(), ["config.json", "generation_config.json", "model.safetensors"])
        XCTAssertEqual(try json(hf.appendingPathComponent("config.json"))["vocab_size"] as? Int, 256)
    }
}
