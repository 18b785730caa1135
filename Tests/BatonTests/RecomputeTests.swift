import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// --recompute 1 and 2 change memory, never the bits: training steps at each level give the same
/// losses, gradient norms, gradients, weights and AdamW moments, bit for bit, as at level 0, for
/// both families, in fp32 and in bf16, with one micro-batch a step and with several; and the
/// activations shrink by exactly the buffers the level shares.
final class RecomputeTests: XCTestCase {
    /// Three blocks, so each shared buffer holds another block's values when the backward pass
    /// reaches a block (a recompute left out shows).
    static let gpt2 = GPTConfig(contextLength: 8, vocabularySize: 64, layers: 3, heads: 2, channels: 16)

    /// Grouped-query attention with q/k/v biases, untied: every path of the family's blocks.
    static var llama: GPTConfig {
        var config = GPTConfig(contextLength: 8, vocabularySize: 64, layers: 3, heads: 4, channels: 32)
        config.architecture = .llama
        config.kvHeads = 2
        config.intermediateSize = 40
        config.attentionBias = true
        return config
    }

    /// What a few steps leave behind, as bit patterns.
    struct Outcome {
        var losses: [UInt32] = [], norms: [UInt32] = []
        var gradients: [UInt32] = [], weights: [UInt32] = [], firstMoments: [UInt32] = [], secondMoments: [UInt32] = []
        /// Every byte the run's device allocated (weights, moments, activations, ...).
        var allocatedBytes = 0
    }

    /// Four steps on a fresh device at `recompute`: one micro-batch a step, then two (gradient
    /// accumulation), then one, then three. B = 2, T = 8.
    func train(_ config: GPTConfig, precision: Precision, recompute: RecomputeLevel) throws -> Outcome {
        let device = Device.cpu(threads: 2)
        try device.setPrecision(precision)
        let model = try GPT(config: config, device: device)
        model.recompute = recompute
        try model.initializeParameters(seed: 3)
        let optimizer = try AdamW(model: model, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0.1)
        let step = TrainingStep(model: model, optimizer: optimizer)
        var generator = RandomGenerator(seed: 11)
        func microBatch() -> (inputs: [Int32], targets: [Int32]) {
            let tokens = (0..<17).map { _ in Int32(generator.next() % 64) }
            return (Array(tokens[0..<16]), Array(tokens[1..<17]))
        }
        var outcome = Outcome()
        for (index, count) in [1, 2, 1, 3].enumerated() {
            let result = try step.run(
                microBatches: (0..<count).map { _ in microBatch() }, B: 2, T: 8, learningRate: 3e-3, gradientClip: 1,
                updateNumber: index + 1)
            XCTAssert(result.applied)
            outcome.losses.append(result.loss.bitPattern)
            outcome.norms.append(result.gradientNorm.bitPattern)
        }
        func bits(_ tensor: Tensor) throws -> [UInt32] { try device.download(tensor).map(\.bitPattern) }
        outcome.gradients = try bits(model.gradients)
        outcome.weights = try bits(model.parameters)
        outcome.firstMoments = try bits(optimizer.firstMoment)
        outcome.secondMoments = try bits(optimizer.secondMoment)
        outcome.allocatedBytes = device.allocatedBytes
        return outcome
    }

    func checkSameBits(_ config: GPTConfig, _ name: String) throws {
        for precision in [Precision.fp32, .bf16] {
            let reference = try train(config, precision: precision, recompute: .off)
            var allocated = [reference.allocatedBytes]
            for level in [RecomputeLevel.activation, .activationAndNorms] {
                let what = "\(name), \(precision.rawValue), --recompute \(level.rawValue)"
                let recomputed = try train(config, precision: precision, recompute: level)
                allocated.append(recomputed.allocatedBytes)
                XCTAssertEqual(recomputed.losses, reference.losses, "\(what): losses")
                XCTAssertEqual(recomputed.norms, reference.norms, "\(what): gradient norms")
                XCTAssert(recomputed.gradients == reference.gradients, "\(what): gradients differ")
                XCTAssert(recomputed.weights == reference.weights, "\(what): weights differ")
                XCTAssert(recomputed.firstMoments == reference.firstMoments, "\(what): first moments differ")
                XCTAssert(recomputed.secondMoments == reference.secondMoments, "\(what): second moments differ")
            }
            // The runs did use the shared buffers: each level allocated exactly its saving less.
            let element = precision == .bf16 ? ElementType.bfloat16 : .float32
            let savings = RecomputeTests.expectedSavings(config, N: 16, element: element)
            XCTAssertEqual(allocated[0] - allocated[1], savings.activation, "\(name), \(precision.rawValue): level 1")
            XCTAssertEqual(allocated[1] - allocated[2], savings.norms, "\(name), \(precision.rawValue): level 2")
        }
    }

    func testGPT2GivesTheSameBitsAtEveryLevel() throws { try checkSameBits(RecomputeTests.gpt2, "gpt2") }

    func testLlamaGivesTheSameBitsAtEveryLevel() throws { try checkSameBits(RecomputeTests.llama, "llama") }

    /// Bytes one level saves over the one below, from the shapes alone: level 1 keeps one MLP
    /// activation [N, 4C] (GPT-2) or [N, I] (Llama) instead of one a layer, level 2 also one ln_1
    /// and one ln_2 [N, C].
    static func expectedSavings(_ config: GPTConfig, N: Int, element: ElementType) -> (activation: Int, norms: Int) {
        let shared = config.layers - 1, width = config.architecture == .llama ? config.hiddenSize : 4 * config.channels
        return (shared * N * width * element.byteCount, 2 * shared * N * config.channels * element.byteCount)
    }

    /// The figure train and bench print is what Activations allocates, and it falls 0 > 1 > 2 by
    /// exactly the shared buffers' saving, for both families and both storages.
    func testByteCountFallsByExactlyTheSharedBuffers() throws {
        let device = Device.cpu(threads: 1)
        defer { try? device.setPrecision(.fp32) }
        let B = 3, T = 8
        for (name, config) in [("gpt2", RecomputeTests.gpt2), ("llama", RecomputeTests.llama)] {
            for (precision, element) in [(Precision.fp32, ElementType.float32), (.bf16, .bfloat16)] {
                try device.setPrecision(precision)
                let model = try GPT(config: config, device: device)
                var counts: [Int] = []
                for level in RecomputeLevel.allCases {
                    let what = "\(name), \(precision.rawValue), --recompute \(level.rawValue)"
                    model.recompute = level
                    let count = model.activationByteCount(B: B, T: T)
                    let before = device.allocatedBytes
                    _ = try Activations(config: config, B: B, T: T, recompute: level, device: device)
                    XCTAssertEqual(device.allocatedBytes - before, count, "\(what): allocated")
                    XCTAssert(model.activationSummary(B: B, T: T).hasSuffix("(--recompute \(level.rawValue))"))
                    counts.append(count)
                }
                let savings = RecomputeTests.expectedSavings(config, N: B * T, element: element)
                XCTAssertGreaterThan(savings.norms, 0)
                XCTAssertEqual(counts[0] - counts[1], savings.activation, "\(name), \(precision.rawValue): 0 -> 1")
                XCTAssertEqual(counts[1] - counts[2], savings.norms, "\(name), \(precision.rawValue): 1 -> 2")
            }
        }
    }

    /// One layer has nothing to share: every level allocates the same.
    func testOneLayerSavesNothing() throws {
        var config = RecomputeTests.gpt2
        config.layers = 1
        let counts = RecomputeLevel.allCases.map {
            Activations.byteCount(
                config: config, B: 2, T: 8, attentionSaved: 100, attentionScratch: 100, element: .float32,
                recompute: $0)
        }
        XCTAssertEqual(Set(counts).count, 1, "\(counts)")
    }

    /// --recompute reads 0, 1 or 2, and a resume may change it silently.
    func testTheSettingTakesThreeLevelsAndIsFreeOnResume() throws {
        XCTAssertEqual(RecomputeLevel(settingText: "2"), .activationAndNorms)
        XCTAssertNil(RecomputeLevel(settingText: "3"))
        XCTAssertNil(RecomputeLevel(settingText: "one"))
        var config = TrainingConfig()
        config.recompute = .activation
        let decoded = try JSONDecoder().decode(TrainingConfig.self, from: JSONEncoder().encode(config))
        XCTAssertEqual(decoded.recompute, .activation)
        // A config file's value: a level, or an error.
        func decode(recompute: Int) throws -> TrainingConfig {
            var object =
                try JSONSerialization.jsonObject(with: JSONEncoder().encode(TrainingConfig())) as! [String: Any]
            object["recompute"] = recompute
            return try JSONDecoder().decode(TrainingConfig.self, from: JSONSerialization.data(withJSONObject: object))
        }
        XCTAssertEqual(try decode(recompute: 2).recompute, .activationAndNorms)
        XCTAssertThrowsError(try decode(recompute: 3))
        var changed = config
        changed.recompute = .activationAndNorms
        XCTAssertEqual(try RunOpener.changes(from: config, to: changed), [])
        XCTAssertEqual(try RunOpener.changes(from: TrainingConfig(), to: changed), [])
    }
}
