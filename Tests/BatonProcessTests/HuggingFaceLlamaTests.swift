import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The Llama family in and out of Hugging Face folders, with the folders transformers saved
/// (scripts/fixtures/make_hf_fixture.py): hf-llama-tiny (LlamaForCausalLM, float32, grouped-query
/// attention, untied), hf-llama-tiny-bf16 (the same in bfloat16, sharded) and hf-qwen2-tiny
/// (Qwen2ForCausalLM, q/k/v biases, tied). Baton computes transformers' logits and loss from each;
/// export(init-from(X)) gives back X's tensors bit for bit and a config.json that reads back as the
/// same shape; what Baton does not compute is a one-line refusal naming config.json and the field.
final class HuggingFaceLlamaTests: FolderTestCase {
    let fixtures = TestPaths.fixtures
    var llama: URL { fixtures.appendingPathComponent("hf-llama-tiny") }
    var qwen2: URL { fixtures.appendingPathComponent("hf-qwen2-tiny") }
    var llamaBF16: URL { fixtures.appendingPathComponent("hf-llama-tiny-bf16") }

    /// The shape each folder's config.json gives.
    var llamaShape: GPTConfig {
        var config = GPTConfig(contextLength: 32, vocabularySize: 256, layers: 2, heads: 4, channels: 16)
        config.architecture = .llama
        config.kvHeads = 2
        config.intermediateSize = 40
        config.ropeTheta = 500_000
        config.normEpsilon = 1e-6
        config.tieEmbeddings = false
        return config
    }
    var qwen2Shape: GPTConfig {
        var config = llamaShape
        config.kvHeads = 1
        config.ropeTheta = 10000
        config.tieEmbeddings = true
        config.attentionBias = true
        return config
    }

    func testLogitsAndLossMatchTransformers() throws {
        for (source, shape) in [(llama, llamaShape), (llamaBF16, llamaShape), (qwen2, qwen2Shape)] {
            let name = source.lastPathComponent
            let hf = try HuggingFaceModel(folder: source)
            XCTAssertEqual(hf.config, shape, name)
            let model = try GPT(config: hf.config, device: Device.cpu(threads: 2))
            try hf.load(into: model)
            let expected = try SafeTensors.read(source.appendingPathComponent("expected.safetensors"))
            let inputs = try expected.integers("inputs").map(Int32.init),
                targets = try expected.integers("targets").map(Int32.init)
            let T = inputs.count / 2
            assertClose(
                try model.logits(inputs: inputs, B: 2, T: T), try expected.floats("logits"), rtol: 1e-5,
                "\(name): logits against transformers")
            let loss = try model.forward(inputs: inputs, targets: targets, B: 2, T: T),
                reference = try expected.floats("loss")[0]
            XCTAssertLessThanOrEqual(
                abs(loss - reference), 1e-5 * reference, "\(name): loss \(loss) against transformers \(reference)")
        }
    }

    /// bfloat16 weights are float32's top 16 bits: each loads as exactly that float32.
    func testBFloat16WeightsWidenExactly() throws {
        let hf = try HuggingFaceModel(folder: llamaBF16)
        XCTAssertEqual(
            hf.checksums.keys.sorted(), ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        let model = try GPT(config: hf.config, device: Device.cpu(threads: 1))
        try hf.load(into: model)
        for spec in model.layout.specs {
            let (file, entry) = try XCTUnwrap(hf.entry(spec.name), spec.name)
            XCTAssertEqual(entry.dtype, "BF16")
            let stored = try Data(contentsOf: file.url)
            let headerLength = Int(stored.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
            let start = 8 + headerLength + entry.range.lowerBound
            let widened = stored.withUnsafeBytes { raw in
                (0..<(entry.range.count / 2)).map {
                    UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: start + 2 * $0, as: UInt16.self)))
                        << 16
                }
            }
            let loaded = try model.device.download(model.parameters.slice(spec.offset, spec.count))
            XCTAssertEqual(loaded.map(\.bitPattern), widened, spec.name)
        }
    }

    /// Every tensor of a safetensors file by name, as float32 values.
    func tensors(_ url: URL) throws -> [String: [Float]] {
        let file = try SafeTensors.read(url)
        return try Dictionary(uniqueKeysWithValues: file.names.map { ($0, try file.floats($0)) })
    }

    func json(_ url: URL) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    /// Starts a run from `source` (copied, with `extra` files added), saves step 0, exports it and
    /// checks that the export holds `source`'s tensors bit for bit and reads back as the same shape;
    /// returns the export's folder.
    func roundTrip(_ source: URL, adding extra: [String: Data] = [:]) throws -> URL {
        let copy = folder.appendingPathComponent("source")
        try FileManager.default.copyItem(at: source, to: copy)
        for (name, data) in extra { try data.write(to: copy.appendingPathComponent(name)) }
        let data = try makeTinyShards(in: folder), run = folder.appendingPathComponent("run").path
        try runBatonExpectingSuccess(
            [
                "train", "--init-from", copy.path, "--data", data, "--out", run, "--batch", "4", "--steps", "2",
                "--stop-at", "0", "--eval-batches", "1", "--device", "cpu",
            ])
        let exported = folder.appendingPathComponent("exported")
        let export = try runBatonExpectingSuccess(["export", run, "--hf", exported.path])
        let original = try tensors(copy.appendingPathComponent("model.safetensors")),
            roundTrip = try tensors(exported.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(roundTrip.keys.sorted(), original.keys.sorted())
        for (name, values) in roundTrip {
            XCTAssertEqual(values.map(\.bitPattern), original[name]?.map(\.bitPattern), name)
        }
        XCTAssertEqual(try HuggingFaceModel(folder: exported).config, try HuggingFaceModel(folder: copy).config)
        let modelClass = try XCTUnwrap(
            try json(copy.appendingPathComponent("config.json"))["architectures"] as? [String])
        XCTAssert(export.stdout.contains("load it with: \(modelClass[0]).from_pretrained"), export.stdout)
        return exported
    }

    func testALlamaFolderRoundTripsWithItsTokenizer() throws {
        let tokenizer = Data(
            #"{"added_tokens": [{"id": 0, "content": "<s>"}, {"id": 1, "content": "</s>"}], "model": {"vocab": {}}}"#
                .utf8)
        let settings = Data(#"{"bos_token": "<s>", "eos_token": {"content": "</s>"}}"#.utf8)
        let exported = try roundTrip(llama, adding: ["tokenizer.json": tokenizer, "tokenizer_config.json": settings])
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: exported.path).sorted(),
            [
                ".baton-export", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json",
            ])
        XCTAssertEqual(try Data(contentsOf: exported.appendingPathComponent("tokenizer.json")), tokenizer)
        XCTAssertEqual(try Data(contentsOf: exported.appendingPathComponent("tokenizer_config.json")), settings)
        let config = try json(exported.appendingPathComponent("config.json"))
        XCTAssertEqual(config["architectures"] as? [String], ["LlamaForCausalLM"])
        XCTAssertEqual(config["model_type"] as? String, "llama")
        XCTAssertEqual(config["hidden_act"] as? String, "silu")
        XCTAssertEqual(config["torch_dtype"] as? String, "float32")
        for (key, value) in [
            ("vocab_size", 256), ("hidden_size", 16), ("intermediate_size", 40), ("num_hidden_layers", 2),
            ("num_attention_heads", 4), ("num_key_value_heads", 2), ("head_dim", 4), ("max_position_embeddings", 32),
            ("bos_token_id", 0), ("eos_token_id", 1),
        ] {
            XCTAssertEqual(config[key] as? Int, value, key)
        }
        for (key, value) in [("rms_norm_eps", 1e-6), ("rope_theta", 500_000), ("initializer_range", 0.02)] {
            XCTAssertEqual(config[key] as? Double, value, key)
        }
        for (key, value) in [("tie_word_embeddings", false), ("attention_bias", false), ("mlp_bias", false)] {
            XCTAssertEqual(config[key] as? Bool, value, key)
        }
        let generation = try json(exported.appendingPathComponent("generation_config.json"))
        XCTAssertEqual(generation["eos_token_id"] as? Int, 1)
        XCTAssertEqual(generation["max_length"] as? Int, 32)
    }

    func testAQwen2FolderWithBiasesRoundTrips() throws {
        let exported = try roundTrip(qwen2)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: exported.path).sorted(),
            [".baton-export", "config.json", "generation_config.json", "model.safetensors"])
        let config = try json(exported.appendingPathComponent("config.json"))
        XCTAssertEqual(config["architectures"] as? [String], ["Qwen2ForCausalLM"])
        XCTAssertEqual(config["model_type"] as? String, "qwen2")
        XCTAssertEqual(config["use_sliding_window"] as? Bool, false)
        XCTAssertEqual(config["tie_word_embeddings"] as? Bool, true)
        XCTAssertEqual(config["num_key_value_heads"] as? Int, 1)
        XCTAssertNil(config["attention_bias"], "Qwen2 has q/k/v biases whatever attention_bias says")
        // A byte-level run's tokenizer declares no bos/eos: null, not LlamaConfig's defaults 1 and 2.
        XCTAssert(config["bos_token_id"] is NSNull && config["eos_token_id"] is NSNull, "\(config)")
    }

    /// A run trained here (flags' defaults: intermediate size, key/value heads, untied) exports the
    /// vocabulary's rows, not the padded ones (300 of 320), in the embedding and the LM head.
    func testAnExportHoldsTheVocabularysRowsOnly() throws {
        let data = try makeTinyShards(in: folder), run = folder.appendingPathComponent("run").path
        try runBatonExpectingSuccess([
            "train", "--arch", "llama", "--data", data, "--out", run, "--layers", "1", "--heads", "2", "--embd", "16",
            "--seq-len", "8", "--vocab-size", "300", "--batch", "4", "--steps", "1", "--eval-batches", "1",
            "--device", "cpu",
        ])
        let exported = folder.appendingPathComponent("exported")
        try runBatonExpectingSuccess(["export", run, "--hf", exported.path])
        let weights = try SafeTensors.read(exported.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(weights.entries["model.embed_tokens.weight"]?.shape, [300, 16])
        XCTAssertEqual(weights.entries["lm_head.weight"]?.shape, [300, 16])
        let config = try json(exported.appendingPathComponent("config.json"))
        XCTAssertEqual(config["intermediate_size"] as? Int, 64, "8/3 x 16 rounded up to a multiple of 64")
        XCTAssertEqual(config["num_key_value_heads"] as? Int, 2)
        XCTAssertEqual(config["tie_word_embeddings"] as? Bool, false)
    }

    /// A Llama-family model has no position table: a run from it may train on shorter sequences,
    /// not longer ones; another shape flag is a conflict.
    func testShorterSequencesAreAllowedAndOtherShapeFlagsConflict() throws {
        let data = try makeTinyShards(in: folder), run = folder.appendingPathComponent("run")
        let common = ["--data", data, "--batch", "4", "--steps", "2", "--eval-batches", "1", "--device", "cpu"]
        try runBatonExpectingSuccess(
            ["train", "--init-from", llama.path, "--out", run.path, "--seq-len", "8", "--stop-at", "0"] + common)
        let state = try CheckpointStore.verify(CheckpointStore(runFolder: run).url(step: 0))
        var expected = llamaShape
        expected.contextLength = 8
        XCTAssertEqual(state.config.model, expected)
        for (flags, words) in [
            (["--seq-len", "64"], ["--seq-len 64 is longer than max_position_embeddings 32"]),
            (["--kv-heads", "4"], ["--kv-heads 4 conflicts with", "config.json", "says 2"]),
            (["--attention-bias", "true"], ["--attention-bias true conflicts with"]),
        ] {
            let out = folder.appendingPathComponent("refused").path
            let result = try runBaton(["train", "--init-from", llama.path, "--out", out] + flags + common)
            XCTAssertEqual(result.status, 2, "\(flags): \(result.stderr)")
            assertFailsInOneLine(result, mentioning: words)
        }
    }
}

/// What Baton does not compute, refused in one line naming the file and the field (exit 1: a
/// file's value, not a usage error), and the model types it reads beside llama and qwen2.
extension HuggingFaceLlamaTests {
    /// A copy of `source` whose config.json has `changes` (NSNull: null) and lacks the keys `remove` lists.
    func variant(
        _ source: URL, _ name: String, _ changes: [String: Any], remove: [String] = []
    ) throws -> URL {
        let copy = folder.appendingPathComponent(name)
        try FileManager.default.copyItem(at: source, to: copy)
        let configURL = copy.appendingPathComponent("config.json")
        var config = try json(configURL)
        config.merge(changes, uniquingKeysWith: { $1 })
        for key in remove { config.removeValue(forKey: key) }
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        return copy
    }

    /// Rewrites a safetensors file with each tensor as `transform` gives it (dtype and bytes), plus `extra`.
    func rewrite(
        _ url: URL, extra: [(String, String, [Int], Data)] = [],
        transform: (String, [Float]) -> (dtype: String, bytes: Data)
    ) throws {
        let file = try SafeTensors.read(url)
        var tensors = try file.names.map { name -> (String, String, [Int], Data) in
            let (dtype, bytes) = transform(name, try file.floats(name))
            return (name, dtype, file.entries[name]!.shape, bytes)
        }
        tensors += extra
        var header: [String: Any] = [:], body = Data()
        for (name, dtype, shape, bytes) in tensors {
            header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [body.count, body.count + bytes.count]]
            body += bytes
        }
        var text = try JSONSerialization.data(withJSONObject: header)
        text += Data(repeating: 0x20, count: (8 - text.count % 8) % 8)
        var length = UInt64(text.count).littleEndian
        try (Data(bytes: &length, count: 8) + text + body).write(to: url)
    }

    func floatBytes(_ values: [Float]) -> Data { values.withUnsafeBufferPointer { Data(buffer: $0) } }

    func testWhatBatonDoesNotComputeIsRefusedInOneLine() throws {
        let data = try makeTinyShards(in: folder)
        let llama3 = ["rope_type": "llama3", "factor": 8.0, "rope_theta": 500_000.0] as [String: Any]
        // (folder, the file the line names, what it says)
        var cases: [(URL, String, [String])] = [
            (
                try variant(llama, "rope-scaling", ["rope_scaling": llama3]), "config.json",
                ["rope_scaling rope_type llama3"]
            ),
            (
                try variant(llama, "yarn", ["rope_parameters": ["rope_type": "yarn", "factor": 4.0]]), "config.json",
                ["rope_parameters rope_type yarn"]
            ),
            (try variant(llama, "head-dim", ["head_dim": 8]), "config.json", ["head_dim 8"]),
            (try variant(llama, "gelu", ["hidden_act": "gelu"]), "config.json", ["hidden_act gelu"]),
            (try variant(llama, "mlp-bias", ["mlp_bias": true]), "config.json", ["mlp_bias true"]),
            (try variant(llama, "o-bias", ["attention_bias": true]), "config.json", ["attention_bias true", "o_proj"]),
            (try variant(qwen2, "window", ["use_sliding_window": true]), "config.json", ["use_sliding_window true"]),
            (
                try variant(llama, "mistral-window", ["model_type": "mistral", "sliding_window": 16]), "config.json",
                ["sliding_window 16"]
            ),
            (
                try variant(qwen2, "untied", ["tie_word_embeddings": false]), "",
                ["missing tensor lm_head.weight", "tie_word_embeddings false"]
            ),
            (
                try variant(llama, "tied", ["tie_word_embeddings": true]), "model.safetensors",
                ["lm_head.weight differs"]
            ),
            (try variant(llama, "olmo2", ["model_type": "olmo2"]), "config.json", ["model_type olmo2", "q and k"]),
            (
                try variant(llama, "quantized", ["quantization_config": ["bits": 4]]), "config.json",
                ["quantization_config"]
            ),
        ]
        let f64 = try variant(llama, "f64", [:])
        try rewrite(f64.appendingPathComponent("model.safetensors")) { name, values in
            name == "model.norm.weight"
                ? ("F64", values.map(Double.init).withUnsafeBufferPointer { Data(buffer: $0) })
                : ("F32", floatBytes(values))
        }
        cases.append((f64, "model.safetensors", ["model.norm.weight is F64"]))
        let extra = try variant(llama, "o-proj-bias-tensor", [:])
        try rewrite(
            extra.appendingPathComponent("model.safetensors"),
            extra: [("model.layers.0.self_attn.o_proj.bias", "F32", [16], floatBytes(Array(repeating: 0, count: 16)))]
        ) { ("F32", floatBytes($1)) }
        cases.append((extra, "model.safetensors", ["model.layers.0.self_attn.o_proj.bias is no part of the model"]))
        for (source, file, words) in cases {
            let run = folder.appendingPathComponent("run-" + source.lastPathComponent).path
            let result = try runBaton([
                "train", "--init-from", source.path, "--data", data, "--out", run, "--batch", "4", "--steps", "2",
                "--device", "cpu",
            ])
            XCTAssertEqual(result.status, 1, "\(source.lastPathComponent): \(result.stderr)")
            assertFailsInOneLine(result, mentioning: [source.appendingPathComponent(file).path] + words)
            XCTAssertFalse(FileManager.default.fileExists(atPath: run), "\(source.lastPathComponent) made its run")
        }
    }

    /// Mistral without a sliding window (or one no shorter than the context), and the config.json
    /// forms transformers 4 writes (rope_theta and rope_scaling null at the top), read as Llama.
    func testMistralAndTransformers4ConfigsReadAsTheSameShape() throws {
        let mistral = try variant(llama, "mistral", ["model_type": "mistral", "sliding_window": NSNull()])
        let wide = try variant(llama, "mistral-wide", ["model_type": "mistral", "sliding_window": 32])
        let older = try variant(
            llama, "transformers-4", ["rope_theta": 500_000.0, "rope_scaling": NSNull()], remove: ["rope_parameters"])
        for source in [mistral, wide, older] {
            XCTAssertEqual(try HuggingFaceModel(folder: source).config, llamaShape, source.lastPathComponent)
        }
        // Mistral's default window (no key) is transformers' 4096, far above this context: read.
        let absent = try variant(llama, "mistral-default", ["model_type": "mistral"], remove: ["sliding_window"])
        XCTAssertEqual(try HuggingFaceModel(folder: absent).config, llamaShape)
    }
}
