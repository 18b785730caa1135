import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The Llama family through the binary: exact resume in every precision, presets, and the
/// refusals of shapes it cannot build. (The numbers against transformers: ReferenceFixtureTests'
/// Llama and Qwen2 subclasses; world sizes: DataParallelTests; the CUDA twin: CUDABackendTests.)
final class LlamaFamilyTests: TinyRunTestCase {
    /// Grouped-query attention (4 heads, 2 key/value heads), untied, q/k/v biases.
    var llama: [String] {
        tinyModel + ["--arch", "llama", "--heads", "4", "--kv-heads", "2", "--attention-bias", "true"]
            + ["--batch", "4", "--steps", "8", "--eval-every", "4", "--eval-batches", "2", "--save-every", "4"]
            + onCPU
    }

    func checkpointFiles(_ run: URL, step: Int) throws -> [Data] {
        let checkpoint = CheckpointStore(runFolder: run).url(step: step)
        return try [CheckpointStore.modelFile, CheckpointStore.optimizerFile].map {
            try Data(contentsOf: checkpoint.appendingPathComponent($0))
        }
    }

    /// Stopped at step 4 and resumed in a fresh process: the uninterrupted run's bytes, in fp32,
    /// tf32, and bf16 with gradient accumulation.
    func testAStoppedLlamaRunResumesToTheSameBytesInEveryPrecision() throws {
        for precision in [[], ["--precision", "tf32"], ["--precision", "bf16", "--grad-accum", "2"]] {
            let name = precision.isEmpty ? "fp32" : precision[1]
            let straight = folder.appendingPathComponent("straight-\(name)"),
                stopped = folder.appendingPathComponent("stopped-\(name)")
            try baton(["train", "--out", straight.path] + llama + precision)
            try baton(["train", "--out", stopped.path, "--stop-at", "4"] + llama + precision)
            let resumed = try baton(["train", "--out", stopped.path, "--resume", "auto"] + onCPU)
            XCTAssertFalse(resumed.stdout.contains("changed:"), resumed.stdout)
            XCTAssertEqual(try checkpointFiles(straight, step: 8), try checkpointFiles(stopped, step: 8), name)
        }
    }

    /// A resume that changes one of the family's settings is refused, naming it.
    func testAResumeThatChangesAFamilySettingNamesIt() throws {
        let run = folder.appendingPathComponent("run")
        try baton(["train", "--out", run.path, "--stop-at", "2"] + llama)
        for (flag, value, named) in [
            ("--kv-heads", "1", "--kv-heads 1 differs from the checkpoint's 2"),
            ("--rope-theta", "500", "--rope-theta 500.0 differs from the checkpoint's 10000.0"),
        ] {
            let result = try runBaton(["train", "--out", run.path, "--resume", "auto", flag, value] + onCPU)
            assertFailsInOneLine(result, mentioning: [named, "keeps its shape"])
        }
    }

    /// A weights file whose metadata ties the head while it holds a head of its own describes
    /// other weights than it holds: refused, not read as the tied model.
    func testAWeightsFileWhoseMetadataTiesAnUntiedHeadIsRefused() throws {
        var config = GPTConfig(contextLength: 8, vocabularySize: 64, layers: 1, heads: 2, channels: 8)
        config.architecture = .llama
        config.tieEmbeddings = true
        let layout = ParameterLayout(config: config)
        let entries =
            layout.specs.map { TensorFile.Entry(name: $0.name, shape: $0.shape) }
            + [TensorFile.Entry(name: "lm_head.weight", shape: [64, 8])]
        let values = [Float](repeating: 0.5, count: layout.storedCount + 64 * 8)
        let url = folder.appendingPathComponent("model.safetensors")
        _ = try values.withUnsafeBufferPointer {
            try TensorFile.write(url, entries: entries, segments: [$0], metadata: ModelWeights.metadata(for: config))
        }
        XCTAssertThrowsError(try ModelWeights.config(of: try SafeTensors.read(url))) {
            XCTAssert("\($0)".contains("holds its own lm_head.weight"), "\($0)")
        }
        let eval = try runBaton(["eval", url.path, "--data", data + "/t_val_000000.bin", "--sequences", "2"] + onCPU)
        assertFailsInOneLine(eval, mentioning: ["lm_head.weight"])
    }

    /// The weights file says its shape: eval and sample need nothing else.
    func testEvalAndSampleReadALlamaRun() throws {
        let run = folder.appendingPathComponent("run")
        try baton(["train", "--out", run.path] + llama)
        let validation = try XCTUnwrap(
            try FileManager.default.contentsOfDirectory(atPath: data).first { $0.contains("val") })
        let eval = try baton(["eval", run.path, "--data", data + "/" + validation, "--sequences", "4"] + onCPU)
        let loss = try XCTUnwrap(eval.stdout.split(separator: "\n").last { $0.hasPrefix("loss: ") })
        XCTAssertNotNil(Float(loss.dropFirst("loss: ".count)), eval.stdout)
        let sample = try baton(["sample", run.path, "--length", "12", "--seed", "3"] + onCPU)
        XCTAssertFalse(sample.stdout.isEmpty)
    }

    /// bench --profile times the family's own ops, and plot draws a Llama run's losses.
    func testBenchProfileAndPlotTakeALlamaRun() throws {
        let bench = try baton(
            [
                "bench", "--arch", "llama", "--heads", "4", "--kv-heads", "2", "--layers", "1", "--embd", "16",
                "--seq-len", "8", "--batch", "2", "--steps", "1", "--warmup-steps", "0", "--profile",
            ] + onCPU)
        for op in ["rmsnorm_backward", "rope_forward", "swiglu_backward", "attention_backward"] {
            XCTAssert(bench.stdout.contains(op), "\(op) missing from the profile: \(bench.stdout)")
        }
        XCTAssertFalse(bench.stdout.contains("layernorm"), bench.stdout)
        let run = folder.appendingPathComponent("run"), svg = folder.appendingPathComponent("loss.svg")
        try baton(["train", "--out", run.path] + llama)
        try baton(["plot", run.path, "--out", svg.path])
        let drawing = try String(contentsOf: svg, encoding: .utf8)
        XCTAssert(drawing.hasPrefix("<svg") || drawing.contains("<svg"), drawing.prefix(200).description)
    }

    /// --model NAME gives the preset's shape, and a flag beside it changes one number.
    func testAPresetGivesItsShapeAndAFlagChangesIt() throws {
        let run = folder.appendingPathComponent("preset")
        try baton(
            [
                "train", "--out", run.path, "--data", data, "--model", "llama-tiny", "--layers", "1", "--seq-len", "8",
                "--vocab-size", "300", "--batch", "2", "--steps", "1", "--eval-every", "0", "--eval-batches", "1",
            ]
                + onCPU)
        let config = try TrainingConfig.Overrides.file(run.appendingPathComponent("config.json"))
        let model = try TrainingConfig().applying(config).model
        var expected = ModelPreset.named("llama-tiny")!.config
        expected.layers = 1
        expected.contextLength = 8
        expected.vocabularySize = 300
        XCTAssertEqual(model, expected)
        let presets = ModelPreset.all.map { ($0.name, $0.parameterCount) }
        // Published sizes: GPT-2 124,439,808 and SmolLM2-135M 134,515,008 (their model cards). minimind's
        // "26M", by hand: 6400 x 512 embedding (tied) + 8 x (2 x 512 norms + 512 x 512 q + 2 x 512 x 128
        // k, v + 512 x 512 o + 3 x 512 x 1408 SwiGLU) + 512 final norm = 25,829,888.
        XCTAssertEqual(presets.first { $0.0 == "gpt2" }?.1, 124_439_808)
        XCTAssertEqual(presets.first { $0.0 == "smollm2-135m" }?.1, 134_515_008)
        XCTAssertEqual(presets.first { $0.0 == "minimind-26m" }?.1, 25_829_888)
    }

    /// Shapes the family cannot build, and its settings given to GPT-2: one line naming the flag, exit 2.
    func testShapesItCannotBuildAreRefusedInOneLine() throws {
        let cases: [([String], String)] = [
            (["--arch", "llama", "--heads", "4", "--kv-heads", "3"], "--kv-heads 3 does not divide --heads 4"),
            (["--kv-heads", "1"], "--kv-heads is a Llama-family setting"),
            (["--tie-embeddings", "false"], "--tie-embeddings is a Llama-family setting"),
            (["--model", "llama-tiny", "--arch", "gpt2"], "or the --model preset or --config file that sets it"),
            (["--arch", "llama", "--heads", "2", "--embd", "18"], "rotary embeddings need pairs"),
            (["--arch", "llama", "--tie-embeddings", "yes"], "--tie-embeddings expects true or false"),
            (["--model", "gpt5"], "--model gpt5 is not a preset"),
            (["--arch", "mamba"], "--arch"),
        ]
        for (index, (flags, message)) in cases.enumerated() {
            let out = folder.appendingPathComponent("refused-\(index)")
            let result = try runBaton(["train", "--out", out.path] + tinyModel + flags)
            XCTAssertEqual(result.status, 2, "\(flags): \(result.stderr)")
            assertFailsInOneLine(result, mentioning: [message])
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "\(flags) made its run folder")
        }
    }
}
