import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// Breakages of product code, each caught by a test that fails when the code it names is broken,
/// not only when it crashes. Tiny runs of the `baton` binary on the bundled text: 48 windows of
/// 8+1 tokens.
final class BreakageTests: TinyRunTestCase {
    /// A tiny model on the CPU, without the schedule's flags (each test sets its own).
    var tiny: [String] {
        tinyModel + ["--eval-every", "0", "--log-every", "100", "--device", "cpu", "--threads", "2"]
    }

    func run(_ name: String) -> URL { folder.appendingPathComponent(name) }

    func weights(_ run: URL, step: Int) throws -> SafeTensors.File {
        try SafeTensors.read(
            CheckpointStore(runFolder: run).url(step: step).appendingPathComponent(CheckpointStore.modelFile))
    }

    func metrics(_ run: URL) throws -> [StepMetrics] {
        try MetricsLog.read(run.appendingPathComponent("metrics.jsonl"))
    }

    /// --grad-accum 2 of batch 2 reads the samples of one batch of 4 (one epoch order, cut in two),
    /// so TrainingStep must give the same loss, gradient norm and weights within rounding. With the
    /// accumulation scale 1 instead of 1/n the gradient is n times larger: its norm shows it, and
    /// the weights too since clipping at 3 then cuts only that run (Adam alone nearly hides a scale).
    func testGradientAccumulationAveragesTheMicroBatches() throws {
        let schedule = ["--steps", "4", "--lr", "3e-3", "--warmup", "1", "--grad-clip", "3", "--save-every", "0"]
        try baton(["train", "--out", run("whole").path, "--batch", "4"] + schedule + tiny)
        for n in [2, 4] {
            let name = "accum-\(n)"
            try baton(
                ["train", "--out", run(name).path, "--batch", "\(4 / n)", "--grad-accum", "\(n)"] + schedule + tiny)
            let whole = try metrics(run("whole")), split = try metrics(run(name))
            XCTAssertEqual(split.count, 4)
            for (a, b) in zip(whole, split) {
                XCTAssertEqual(b.loss, a.loss, accuracy: 1e-5 * a.loss, "\(name): loss at step \(a.step)")
                XCTAssertEqual(
                    b.gradNorm, a.gradNorm, accuracy: 1e-4 * a.gradNorm, "\(name): gradient norm at step \(a.step)")
            }
            // The weights within 2e-3 of each tensor's largest value: the query/key bias's elements are
            // rounding noise that Adam divides by its own sqrt(v) (2.6e-4 measured on OpenBLAS's
            // Haswell kernels); a gradient n times too large misses by far more (and its norm above).
            let expected = try weights(run("whole"), step: 4), actual = try weights(run(name), step: 4)
            for tensor in expected.names {
                assertClose(try actual.floats(tensor), try expected.floats(tensor), rtol: 2e-3, "\(name): \(tensor)")
            }
        }
    }

    /// Decoupled weight decay shrinks each 2-D weight by (1 - lr·decay) per step: with lr 1e-4 and
    /// decay 1000 that is 0.9 a step, while Adam moves each value by at most lr (1e-4, against
    /// weights of about 0.02). After 5 steps the 2-D weights' norm is 0.9^5 ≈ 0.59 of the
    /// undecayed run's; the 1-D ones (biases, LayerNorm) are not decayed.
    func testWeightDecayShrinksTheTwoDimensionalWeights() throws {
        let schedule = [
            "--steps", "5", "--batch", "4", "--lr", "1e-4", "--min-lr", "1e-4", "--warmup", "0", "--save-every", "0",
        ]
        try baton(["train", "--out", run("plain").path, "--weight-decay", "0"] + schedule + tiny)
        try baton(["train", "--out", run("decayed").path, "--weight-decay", "1000"] + schedule + tiny)
        let plain = try weights(run("plain"), step: 5), decayed = try weights(run("decayed"), step: 5)
        func norm(_ file: SafeTensors.File, dimensions: Int) throws -> Double {
            var sum = 0.0
            for name in file.names where file.entries[name]!.shape.count == dimensions {
                sum += try file.floats(name).reduce(0) { $0 + Double($1) * Double($1) }
            }
            return sum.squareRoot()
        }
        let ratio2D = try norm(decayed, dimensions: 2) / norm(plain, dimensions: 2)
        XCTAssertEqual(ratio2D, 0.59049, accuracy: 0.03, "2-D weights' norm, decay 1000 against 0")
        XCTAssertEqual(
            try norm(decayed, dimensions: 1) / norm(plain, dimensions: 1), 1, accuracy: 0.01,
            "1-D weights are not decayed")
    }

    /// The data order is a function of --seed: two seeds read other samples in the first steps
    /// (one seed twice reading the same is checked by the bitwise tests).
    func testTheSeedChangesTheSampleOrder() throws {
        var ledgers: [[String]] = []
        for seed in ["1", "2"] {
            let ledger = run("ledger-\(seed).jsonl")
            try baton(
                [
                    "train", "--out", run("seed-\(seed)").path, "--seed", seed, "--steps", "3", "--batch", "4",
                    "--save-every", "0",
                    "--sample-ledger", ledger.path,
                ] + tiny)
            let text = try String(contentsOf: ledger, encoding: .utf8)
            ledgers.append(text.split(separator: "\n").map { String($0) })
        }
        XCTAssertEqual(ledgers[0].count, 3)
        XCTAssertEqual(ledgers[1].count, 3)
        XCTAssertNotEqual(ledgers[0], ledgers[1], "seeds 1 and 2 read the same samples")
        // The loader alone: the seed, and the epoch, change the order.
        let dataset = try TokenDataset.open(
            folder: URL(fileURLWithPath: data), split: "train", sequenceLength: 8, vocabularySize: 256)
        let one = DataLoader(dataset: dataset, batchSize: 4, seed: 1),
            two = DataLoader(dataset: dataset, batchSize: 4, seed: 2)
        XCTAssertNotEqual(one.order(epoch: 0), two.order(epoch: 0))
        XCTAssertNotEqual(one.order(epoch: 0), one.order(epoch: 1))
        XCTAssertEqual(
            one.order(epoch: 0).sorted(), Array(0..<dataset.sampleCount), "an epoch visits every sample once")
    }

    /// `sample --top-k 1` is the greedy sequence whatever the seed and temperature; a top-k over
    /// the whole vocabulary draws other tokens with other seeds.
    func testTopKOneIsGreedyAndALargeTopKVaries() throws {
        let device = Device.cpu(threads: 2)
        let model = try GPT(
            config: GPTConfig(contextLength: 16, vocabularySize: 256, layers: 1, heads: 2, channels: 16), device: device
        )
        try model.initializeParameters(seed: 5)
        let optimizer = try AdamW(model: model, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0)
        try saveCheckpoint(model, optimizer, run: run("model"), step: 0)
        func sample(_ flags: [String]) throws -> String {
            try baton(
                [
                    "sample", run("model").path, "--prompt", "Of", "--length", "40", "--device", "cpu", "--tokenizer",
                    "bytes",
                ] + flags
            ).stdout
        }
        let greedy = try sample(["--temperature", "0"])
        XCTAssertEqual(try sample(["--top-k", "1", "--seed", "1", "--temperature", "0.8"]), greedy)
        XCTAssertEqual(try sample(["--top-k", "1", "--seed", "2", "--temperature", "3"]), greedy)
        let wide = try sample(["--top-k", "256", "--seed", "1", "--temperature", "1"])
        XCTAssertNotEqual(wide, greedy)
        XCTAssertNotEqual(
            try sample(["--top-k", "256", "--seed", "2", "--temperature", "1"]), wide,
            "two seeds drew the same 40 tokens")
    }

    /// A flipped byte inside optimizer.safetensors's tensors (its size unchanged) is caught by its
    /// CRC alone: `baton checkpoints` says corrupt, and `--resume step-N` refuses it by name.
    func testAFlippedByteInTheOptimizerFileIsCaught() throws {
        let flags = ["--steps", "10", "--batch", "4", "--save-every", "5"] + tiny
        try baton(["train", "--out", run("r").path] + flags)
        let file = CheckpointStore(runFolder: run("r")).url(step: 10).appendingPathComponent(
            CheckpointStore.optimizerFile)
        var bytes = try Data(contentsOf: file)
        bytes[bytes.count - 6] ^= 0x10  // in the last tensor's data, far from the header
        try bytes.write(to: file)
        let listing = try baton(["checkpoints", run("r").path])
        let line10 = listing.stdout.split(separator: "\n").first { $0.contains("step-00000010") } ?? ""
        XCTAssert(
            line10.contains("corrupt") && line10.contains("optimizer.safetensors") && line10.contains("checksum"),
            listing.stdout)
        XCTAssert(
            listing.stdout.split(separator: "\n").contains { $0.contains("step-00000005") && $0.contains("verified") },
            listing.stdout)
        let resumed = try runBaton(
            ["train", "--out", run("r").path, "--resume", "step-10", "--steps", "12"] + flags.dropFirst(2))
        XCTAssertNotEqual(resumed.status, 0)
        XCTAssertEqual(resumed.stderr.split(separator: "\n").count, 1, resumed.stderr)
        XCTAssert(
            resumed.stderr.contains("step-00000010") && resumed.stderr.contains("optimizer.safetensors")
                && resumed.stderr.contains("checksum"), resumed.stderr)
    }

    /// --beta1, --beta2 and --grad-clip each change the weights after 3 steps (Adam's first update
    /// is the gradient's sign whatever they are, so one step would not show it); a clip above
    /// every gradient norm changes nothing, so the difference is the clipping's.
    func testBetasAndGradientClipChangeTheWeights() throws {
        let schedule = ["--steps", "3", "--batch", "4", "--lr", "3e-3", "--warmup", "0", "--save-every", "0"]
        func modelBytes(_ name: String, _ flags: [String]) throws -> Data {
            try baton(["train", "--out", run(name).path] + flags + schedule + tiny)
            return try Data(
                contentsOf: CheckpointStore(runFolder: run(name)).url(step: 3).appendingPathComponent(
                    CheckpointStore.modelFile))
        }
        let base = try modelBytes("base", [])
        XCTAssertNotEqual(try modelBytes("beta1", ["--beta1", "0.5"]), base, "--beta1 0.5 left the weights as 0.9 did")
        XCTAssertNotEqual(
            try modelBytes("beta2", ["--beta2", "0.9"]), base, "--beta2 0.9 left the weights as 0.99 did")
        XCTAssertGreaterThan(
            try metrics(run("base")).map(\.gradNorm).max()!, 1, "the default clip at 1 must cut these gradients")
        let unclipped = try modelBytes("clip-0", ["--grad-clip", "0"])
        XCTAssertNotEqual(unclipped, base, "--grad-clip 0 left the weights as clipping at 1 did")
        XCTAssertEqual(
            try modelBytes("clip-100", ["--grad-clip", "100"]), unclipped, "a clip above every norm changes nothing")
    }

    /// --keep-every keeps its multiples past --keep-last; --allow-batch-change lets a resume take
    /// another --global-batch, which is refused without it.
    func testKeepEveryAndAllowBatchChange() throws {
        let flags = ["--batch", "4", "--save-every", "2", "--keep-last", "1", "--keep-every", "4"] + tiny
        try baton(["train", "--out", run("r").path, "--steps", "10"] + flags)
        XCTAssertEqual(CheckpointStore(runFolder: run("r")).steps(), [4, 8, 10])
        let refused = try runBaton(
            ["train", "--out", run("r").path, "--resume", "auto", "--steps", "12", "--global-batch", "8"] + flags)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssert(refused.stderr.contains("--allow-batch-change"), refused.stderr)
        try baton(
            [
                "train", "--out", run("r").path, "--resume", "auto", "--steps", "12", "--global-batch", "8",
                "--allow-batch-change",
            ] + flags)
        let state = CheckpointStore(runFolder: run("r")).url(step: 12).appendingPathComponent("state.json")
        XCTAssertEqual(try CheckpointState.decode(try Data(contentsOf: state), path: state.path).config.globalBatch, 8)
        XCTAssertEqual(try metrics(run("r")).last?.step, 12)
    }
}
