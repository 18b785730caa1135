import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The cross entropy's masked positions (negative targets): loss 0 and a zero gradient row, so a
/// batch with nothing counted gives loss 0 and gradient 0, never a NaN; a partly masked batch's
/// loss is the mean over the counted positions of the unmasked losses.
final class MaskedLossTests: XCTestCase {
    let B = 2, T = 8

    func tinyModel() throws -> GPT {
        let model = try GPT(
            config: GPTConfig(contextLength: T, vocabularySize: 50, layers: 1, heads: 2, channels: 16),
            device: Device.cpu())
        try model.initializeParameters(seed: 7)
        return model
    }

    var inputs: [Int32] { (0..<(B * T)).map { Int32(($0 * 7 + 3) % 50) } }
    var targets: [Int32] { (0..<(B * T)).map { Int32(($0 * 11 + 5) % 50) } }

    func testTheKernelGivesMaskedRowsZeroLossAndZeroGradient() throws {
        let device = try Device.cpu()
        let N = 6, V = 5, Vp = 8
        let logits = (0..<(N * Vp)).map { Float(($0 * 37) % 11) - 5 }
        let targets: [Int32] = [2, -1, 4, -1, -1, 0]
        let losses = try device.allocate(floats: N), l = try device.allocate(activations: N * Vp)
        try device.upload(logits, to: l)
        let t = try device.allocate(tokens: N)
        try device.upload(tokens: targets, to: t)
        try device.softmaxCrossEntropy(
            losses: losses, dlogits: l, logits: l, targets: t, N: N, V: V, paddedV: Vp, dloss: 0.25)
        let lossValues = try device.download(losses), gradient = try device.download(l)
        for (n, target) in targets.enumerated() {
            let row = Array(gradient[(n * Vp)..<((n + 1) * Vp)])
            if target < 0 {
                XCTAssertEqual(lossValues[n], 0, "row \(n)")
                XCTAssertEqual(row, [Float](repeating: 0, count: Vp), "row \(n)")
            } else {
                XCTAssertGreaterThan(lossValues[n], 0, "row \(n)")
                XCTAssert(row.contains { $0 != 0 } && row.allSatisfy(\.isFinite), "row \(n)")
            }
        }
    }

    func testABatchWithNothingCountedHasLossZeroAndGradientZero() throws {
        let model = try tinyModel()
        let masked = [Int32](repeating: -1, count: B * T)
        try model.zeroGradients()
        let loss = try model.forward(inputs: inputs, targets: masked, B: B, T: T, lossScaleForBackward: 1)
        try model.backward()
        XCTAssertEqual(loss, 0)
        XCTAssertEqual(try model.device.globalNormSquared(model.gradients), 0)
        // Through a training step too: loss 0, gradient norm 0, applied, weights finite.
        let step = TrainingStep(
            model: model, optimizer: try AdamW(model: model, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1))
        let outcome = try step.run(
            microBatches: [(inputs, masked), (inputs, masked)], B: B, T: T, learningRate: 1e-3, gradientClip: 1,
            updateNumber: 1, lossMasked: true)
        XCTAssertEqual(outcome.loss, 0)
        XCTAssertEqual(outcome.gradientNorm, 0)
        XCTAssert(outcome.applied)
        XCTAssert(try model.device.download(model.parameters).allSatisfy(\.isFinite))
    }

    /// `baton eval` on a masked shard: the mean over its trained-on targets, as training's.
    func testEvalOnAMaskedShardIsTheMaskedMean() throws {
        let model = try tinyModel()
        let folder = try TestPaths.temporaryFolder("masked-eval")
        defer { try? FileManager.default.removeItem(at: folder) }
        let tokens = (0..<(B * T + 1)).map { UInt32(($0 * 13 + 1) % 50) }
        let flags = tokens.indices.map { $0 % 4 != 0 }
        let url = folder.appendingPathComponent("x_val_000000.bin")
        _ = try ShardSequence<UInt32>.writeShard(
            zip(tokens, flags).map { $0 | ($1 ? TokenShard.Format.trainedOnBit : 0) }[...], to: url, format: .masked)
        let shard = try TokenShard(url: url, vocabularySize: 50)
        XCTAssertEqual(shard.format, .masked)
        XCTAssertEqual(try shard.tokens(start: 0, count: tokens.count), tokens.map { Int32($0) })
        // Sequence i: inputs tokens[i*T ..< i*T+T], targets one later, -1 where not trained on.
        var inputs: [Int32] = [], targets: [Int32] = []
        for row in 0..<B {
            for i in (row * T)..<(row * T + T) {
                inputs.append(Int32(tokens[i]))
                targets.append(flags[i + 1] ? Int32(tokens[i + 1]) : -1)
            }
        }
        let expected = try model.forward(inputs: inputs, targets: targets, B: B, T: T)
        XCTAssertEqual(try Evaluation.meanLoss(model: model, shard: shard, sequences: B), expected)
    }

    func testAPartlyMaskedLossIsTheMeanOverTheCountedPositions() throws {
        let model = try tinyModel()
        let full = targets
        try model.forward(inputs: inputs, targets: full, B: B, T: T)
        let unmaskedLosses = try model.lastLosses()
        let masked = full.enumerated().map { $0.offset % 3 == 0 ? $0.element : -1 }
        let loss = try model.forward(inputs: inputs, targets: masked, B: B, T: T)
        var sum = 0.0, count = 0
        for (i, target) in masked.enumerated() where target >= 0 {
            sum += Double(unmaskedLosses[i])
            count += 1
        }
        XCTAssertEqual(Double(loss), sum / Double(count), accuracy: 1e-6 * sum / Double(count))
        // Pretraining targets (nothing masked) keep the plain mean.
        let plain = try model.forward(inputs: inputs, targets: full, B: B, T: T)
        XCTAssertEqual(plain, GPT.meanLoss(unmaskedLosses[...]))
    }
}
