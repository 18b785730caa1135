import Foundation
import XCTest
@testable import Baton

/// The CPU backend against PyTorch: Tests/BatonTests/Fixtures/gpt2_tiny.safetensors, written by
/// scripts/make_fixtures.py.
final class ReferenceFixtureTests: XCTestCase {
    var fixture: SafeTensors.File!
    var model: GPT!
    var inputs: [Int32] = [], targets: [Int32] = []
    var B = 0, T = 0

    override func setUpWithError() throws {
        fixture = try SafeTensors.read(TestPaths.fixtures.appendingPathComponent("gpt2_tiny.safetensors"))
        func meta(_ key: String) -> Int { Int(fixture.metadata[key]!)! }
        B = meta("B"); T = meta("T")
        let config = GPTConfig(contextLength: meta("n_ctx"), vocabularySize: meta("V"), layers: meta("n_layer"),
                               heads: meta("n_head"), channels: meta("n_embd"))
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
        let optimizer = try AdamW(model: model, beta1: meta("beta1"), beta2: meta("beta2"), epsilon: meta("eps"), weightDecay: meta("weight_decay"))
        let expected = try fixture.floats("losses")
        var losses: [Float] = []
        for step in 0..<expected.count {
            try model.zeroGradients()
            losses.append(try model.forward(inputs: inputs, targets: targets, B: B, T: T, lossScaleForBackward: 1))
            try model.backward()
            let norm = try model.device.globalNormSquared(model.gradients).squareRoot()
            try optimizer.update(step: step + 1, learningRate: meta("lr"), gradientScale: AdamW.clipScale(norm: norm, maxNorm: meta("grad_clip")))
        }
        for (step, (loss, reference)) in zip(losses, expected).enumerated() {
            XCTAssertLessThanOrEqual(abs(loss - reference), 1e-5 * abs(reference), "step \(step): loss \(loss) vs PyTorch \(reference)")
        }
        XCTAssertLessThan(losses.last!, losses.first! - 0.5, "the 10 steps should train")
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
            try model.forward(inputs: Array(inputs[range]), targets: Array(targets[range]), B: 1, T: T, lossScaleForBackward: 1 / Float(B))
            try model.backward()
        }
        assertClose(try model.device.download(model.gradients), full, rtol: 1e-5, "accumulated gradients")
    }
}
