import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// A vocabulary that is not a multiple of 64 (37 -> 64 in memory): the logits handed out have the
/// vocabulary's columns only, and the loss is the cross-entropy over those columns alone.
final class PaddedVocabularyTests: XCTestCase {
    func testLogitsHoldTheVocabularyAndTheLossIgnoresThePadding() throws {
        let config = GPTConfig(contextLength: 8, vocabularySize: 37, layers: 1, heads: 2, channels: 8)
        XCTAssertEqual(config.paddedVocabularySize, 64)
        let model = try GPT(config: config, device: Device.cpu(threads: 2))
        try model.initializeParameters(seed: 3)
        let B = 2, T = 8, V = 37
        let inputs: [Int32] = (0..<(B * T)).map { Int32(($0 * 7) % V) },
            targets: [Int32] = (0..<(B * T)).map { Int32(($0 * 5 + 3) % V) }
        let logits = try model.logits(inputs: inputs, B: B, T: T)
        XCTAssertEqual(logits.count, B * T * V)
        var expected = 0.0
        for row in 0..<(B * T) {
            let values = logits[(row * V)..<((row + 1) * V)].map(Double.init)
            let top = values.max()!
            let logSum = log(values.reduce(0) { $0 + exp($1 - top) }) + top
            expected += logSum - values[Int(targets[row])]
        }
        let loss = try model.forward(inputs: inputs, targets: targets, B: B, T: T)
        XCTAssertEqual(Double(loss), expected / Double(B * T), accuracy: 1e-5)
        // The padded rows of the embedding are zero, and stay out of the parameter count.
        let wte = try model.device.download(model.parameters.slice(0, 64 * 8))
        XCTAssert(wte[(37 * 8)...].allSatisfy { $0 == 0 })
        XCTAssertEqual(model.parameterCount, model.layout.totalCount - (64 - 37) * 8)
    }
}
