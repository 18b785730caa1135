import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// Gradient accumulation sums the micro-batches as a pairwise tree, so a step's gradient does not
/// depend on how its micro-batches are split into contiguous power-of-two blocks (one per rank,
/// for data parallelism): one block of 8, two of 4 or four of 2, each summed by the tree and the
/// block sums added pairwise, give the same bits.
final class GradientTreeTests: XCTestCase {
    func testAnySplitIntoPowerOfTwoBlocksGivesTheSameBits() throws {
        let config = GPTConfig(contextLength: 8, vocabularySize: 64, layers: 1, heads: 2, channels: 16)
        let model = try GPT(config: config, device: Device.cpu(threads: 2))
        try model.initializeParameters(seed: 5)
        let step = TrainingStep(
            model: model, optimizer: try AdamW(model: model, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0))
        var generator = RandomGenerator(seed: 9)
        let micro = (0..<8).map { _ -> (inputs: [Int32], targets: [Int32]) in
            let tokens = (0..<(2 * 8 + 2)).map { _ in Int32(generator.next() % 64) }
            return (Array(tokens[0..<16]), Array(tokens[1..<17]))
        }
        let scale: Float = 1 / 8
        func gradient(of blocks: Int) throws -> [Float] {
            let size = micro.count / blocks
            var sums: [[Float]] = []
            for block in 0..<blocks {
                _ = try step.accumulateGradients(
                    microBatches: Array(micro[(block * size)..<((block + 1) * size)]), B: 2, T: 8, scale: scale)
                sums.append(try model.device.download(model.gradients))
            }
            // The blocks' sums added pairwise, as ranks would combine them by recursive doubling.
            while sums.count > 1 {
                sums = stride(from: 0, to: sums.count, by: 2).map { i in zip(sums[i], sums[i + 1]).map { $0 + $1 } }
            }
            return sums[0]
        }
        let one = try gradient(of: 1)
        XCTAssert(try gradient(of: 2).map(\.bitPattern) == one.map(\.bitPattern), "two blocks of 4: other bits")
        XCTAssert(try gradient(of: 4).map(\.bitPattern) == one.map(\.bitPattern), "four blocks of 2: other bits")
        XCTAssert(
            try gradient(of: 8).map(\.bitPattern) == one.map(\.bitPattern), "eight single micro-batches: other bits")
        // And the tree is what the step applies: the same gradient as summing in a plain loop,
        // up to float rounding.
        var sequential = [Float](repeating: 0, count: model.layout.totalCount)
        for batch in micro {
            _ = try step.accumulateGradients(microBatches: [batch], B: 2, T: 8, scale: scale)
            sequential = zip(sequential, try model.device.download(model.gradients)).map { $0 + $1 }
        }
        assertClose(one, sequential, rtol: 1e-5, "tree against sequential sum")
        // The buffers are made once: a second step allocates nothing.
        let before = model.device.allocationCount
        _ = try gradient(of: 1)
        XCTAssertEqual(model.device.allocationCount, before)
    }
}
