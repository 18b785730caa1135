import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The CPU backend against PyTorch: Tests/BatonTests/Fixtures/gpt2_tiny.safetensors, written by
/// scripts/fixtures/make_fixtures.py; the subclasses below run every test on the Llama family's
/// fixtures, made by transformers (scripts/fixtures/make_llama_fixtures.py).
class ReferenceFixtureTests: XCTestCase {
    class var fixtureName: String { "gpt2_tiny" }

    var fixture: SafeTensors.File!
    var model: GPT!
    var inputs: [Int32] = [], targets: [Int32] = []
    var B = 0, T = 0

    override func setUpWithError() throws {
        fixture = try SafeTensors.read(
            TestPaths.fixtures.appendingPathComponent(Self.fixtureName + ".safetensors"))
        func meta(_ key: String) -> Int { Int(fixture.metadata[key]!)! }
        B = meta("B"); T = meta("T")
        var config = GPTConfig(
            contextLength: meta("n_ctx"), vocabularySize: meta("V"), layers: meta("n_layer"),
            heads: meta("n_head"), channels: meta("n_embd"))
        if fixture.metadata["n_kv_head"] != nil {
            config.architecture = .llama
            config.kvHeads = meta("n_kv_head")
            config.intermediateSize = meta("intermediate_size")
            config.ropeTheta = Float(fixture.metadata["rope_theta"]!)!
            config.normEpsilon = Float(fixture.metadata["rms_norm_eps"]!)!
            config.tieEmbeddings = fixture.metadata["tie_word_embeddings"] == "true"
            config.attentionBias = fixture.metadata["attention_bias"] == "true"
        }
        model = try GPT(config: config, device: Device.cpu())
        try ModelWeights.load(fixture, into: model)
        inputs = try fixture.integers("inputs").map(Int32.init)
        targets = try fixture.integers("targets").map(Int32.init)
    }

    func testLogitsAndLossMatchPyTorch() throws {
        let logits = try model.logits(inputs: inputs, B: B, T: T)
        assertClose(logits, try fixture.floats("logits"), rtol: 1e-5, "logits")
        let loss = try model.forward(inputs: inputs, targets: targets, B: B, T: T)
        let expected = try fixture.floats("loss")[0]
        XCTAssertLessThanOrEqual(abs(loss - expected), 1e-5 * abs(expected), "loss \(loss) vs PyTorch \(expected)")
    }

    func testEveryGradientMatchesPyTorch() throws {
        try model.zeroGradients()
        try model.forward(inputs: inputs, targets: targets, B: B, T: T, lossScaleForBackward: 1)
        try model.backward()
        for spec in model.layout.specs {
            let gradient = try model.device.download(model.gradient(spec.name))
            assertClose(gradient, try fixture.floats("grad." + spec.name), rtol: 1e-4, "gradient of \(spec.name)")
        }
    }

    func testTenAdamWStepsMatchPyTorch() throws {
        func meta(_ key: String) -> Float { Float(fixture.metadata[key]!)! }
        let optimizer = try AdamW(
            model: model, beta1: meta("beta1"), beta2: meta("beta2"), epsilon: meta("eps"),
            weightDecay: meta("weight_decay"))
        let trainingStep = TrainingStep(model: model, optimizer: optimizer)
        let expected = try fixture.floats("losses")
        var losses: [Float] = []
        for step in 0..<expected.count {
            let outcome = try trainingStep.run(
                microBatches: [(inputs, targets)], B: B, T: T, learningRate: meta("lr"),
                gradientClip: meta("grad_clip"), updateNumber: step + 1)
            XCTAssert(outcome.applied)
            losses.append(outcome.loss)
        }
        for (step, (loss, reference)) in zip(losses, expected).enumerated() {
            XCTAssertLessThanOrEqual(
                abs(loss - reference), 1e-5 * abs(reference), "step \(step): loss \(loss) vs PyTorch \(reference)")
        }
        XCTAssertLessThan(losses.last!, losses.first! - 0.5, "the 10 steps should train")
        // Where the 10 steps ended. The moments are running averages of gradients and their
        // squares, so they are held to the gradients' 1e-4 (measured: 2e-5). The weights are not
        // all within 1e-5: AdamW divides each gradient by its own sqrt(v), so an element whose
        // gradient is small, or rounding noise (the key bias's gradient is zero in exact
        // arithmetic), turns fp32's last-bit differences into step-sized ones. So: at least 99%
        // of the weights within 1e-5 of their tensor's scale, and every one within one step (lr).
        let lr = meta("lr")
        var outside = 0, total = 0
        for spec in model.layout.specs {
            let slice = { (t: Tensor) in try self.model.device.download(t.slice(spec.offset, spec.count)) }
            assertClose(
                try slice(optimizer.firstMoment), try fixture.floats("exp_avg." + spec.name), rtol: 1e-4,
                "exp_avg of \(spec.name)")
            assertClose(
                try slice(optimizer.secondMoment), try fixture.floats("exp_avg_sq." + spec.name), rtol: 1e-4,
                "exp_avg_sq of \(spec.name)")
            let weights = try slice(model.parameters), expected = try fixture.floats("after." + spec.name)
            let scale = expected.map { abs($0) }.max()!
            for (weight, reference) in zip(weights, expected) {
                let error = abs(weight - reference)
                XCTAssertLessThanOrEqual(error, lr, "\(spec.name) after 10 steps: \(weight) vs PyTorch \(reference)")
                if !(error <= 1e-5 * scale) { outside += 1 }
                total += 1
            }
        }
        print(
            "fixture: after 10 AdamW steps, \(total - outside) of \(total) weights within 1e-5 of PyTorch (relative "
                + "to their tensor's scale)"
        )
        XCTAssertLessThanOrEqual(outside * 50, total, "more than 2% of the weights differ from PyTorch by over 1e-5")
    }

    /// A batch shorter than the context (T 11 of 16): only the first T positions embed and attend.
    func testAShorterSequenceMatchesPyTorch() throws {
        let shortT = Int(fixture.metadata["T_short"]!)!
        XCTAssertLessThan(shortT, model.config.contextLength)
        let shortInputs = try fixture.integers("short.inputs").map(Int32.init),
            shortTargets = try fixture.integers("short.targets").map(Int32.init)
        assertClose(
            try model.logits(inputs: shortInputs, B: B, T: shortT), try fixture.floats("short.logits"), rtol: 1e-5,
            "short logits")
        try model.zeroGradients()
        let loss = try model.forward(
            inputs: shortInputs, targets: shortTargets, B: B, T: shortT, lossScaleForBackward: 1)
        let expected = try fixture.floats("short.loss")[0]
        XCTAssertLessThanOrEqual(
            abs(loss - expected), 1e-5 * abs(expected), "short loss \(loss) vs PyTorch \(expected)")
        try model.backward()
        for spec in model.layout.specs {
            assertClose(
                try model.device.download(model.gradient(spec.name)), try fixture.floats("short.grad." + spec.name),
                rtol: 1e-4,
                "short-sequence gradient of \(spec.name)")
        }
    }

    func testGradientAccumulationEqualsOneLargeBatch() throws {
        // Two micro-batches of one sequence with loss scale 1/2 give the gradient of the batch of two.
        try model.zeroGradients()
        try model.forward(inputs: inputs, targets: targets, B: B, T: T, lossScaleForBackward: 1)
        try model.backward()
        let full = try model.device.download(model.gradients)
        try model.zeroGradients()
        for row in 0..<B {
            let range = (row * T)..<((row + 1) * T)
            try model.forward(
                inputs: Array(inputs[range]), targets: Array(targets[range]), B: 1, T: T,
                lossScaleForBackward: 1 / Float(B))
            try model.backward()
        }
        assertClose(try model.device.download(model.gradients), full, rtol: 1e-5, "accumulated gradients")
    }
}

/// LlamaForCausalLM: grouped-query attention, untied, intermediate 88, eps 1e-6, theta 500000.
final class LlamaReferenceFixtureTests: ReferenceFixtureTests {
    override class var fixtureName: String { "llama_tiny" }
    // Linux's XCTest runs only the tests a class declares itself.
    override func testLogitsAndLossMatchPyTorch() throws { try super.testLogitsAndLossMatchPyTorch() }
    override func testEveryGradientMatchesPyTorch() throws { try super.testEveryGradientMatchesPyTorch() }
    override func testTenAdamWStepsMatchPyTorch() throws { try super.testTenAdamWStepsMatchPyTorch() }
    override func testAShorterSequenceMatchesPyTorch() throws { try super.testAShorterSequenceMatchesPyTorch() }
    override func testGradientAccumulationEqualsOneLargeBatch() throws {
        try super.testGradientAccumulationEqualsOneLargeBatch()
    }
}

/// Qwen2ForCausalLM: q/k/v biases, multi-query attention, tied embeddings.
final class Qwen2ReferenceFixtureTests: ReferenceFixtureTests {
    override class var fixtureName: String { "qwen2_tiny" }
    // Linux's XCTest runs only the tests a class declares itself.
    override func testLogitsAndLossMatchPyTorch() throws { try super.testLogitsAndLossMatchPyTorch() }
    override func testEveryGradientMatchesPyTorch() throws { try super.testEveryGradientMatchesPyTorch() }
    override func testTenAdamWStepsMatchPyTorch() throws { try super.testTenAdamWStepsMatchPyTorch() }
    override func testAShorterSequenceMatchesPyTorch() throws { try super.testAShorterSequenceMatchesPyTorch() }
    override func testGradientAccumulationEqualsOneLargeBatch() throws {
        try super.testGradientAccumulationEqualsOneLargeBatch()
    }
}
