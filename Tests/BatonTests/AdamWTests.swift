import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// AdamW in one call over the flat buffer gives exactly the bits of one call per tensor with each
/// tensor's own weight decay (what the PyTorch fixtures check).
final class AdamWTests: XCTestCase {
    func testOneCallWithDecayRangesEqualsOneCallPerTensor() throws {
        let device = Device.cpu(threads: 2)
        let config = GPTConfig(contextLength: 8, vocabularySize: 37, layers: 2, heads: 2, channels: 8)
        let layout = ParameterLayout(config: config)
        var generator = RandomGenerator(seed: 9)
        func random() -> [Float] { (0..<layout.totalCount).map { _ in Float(generator.nextNormal()) } }
        let params = random(), grads = random(), m = random(), v = random().map { $0 * $0 }
        func tensors() throws -> [Tensor] {
            try [params, grads, m, v].map { values in
                let t = try device.allocate(floats: values.count)
                try device.upload(values, to: t)
                return t
            }
        }
        let perTensor = try tensors()
        for spec in layout.specs {
            let slice = { (t: Tensor) in t.slice(spec.offset, spec.allocated) }
            try device.adamwUpdate(
                params: slice(perTensor[0]), grads: slice(perTensor[1]), m: slice(perTensor[2]), v: slice(perTensor[3]),
                learningRate: 3e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: spec.decays ? 0.1 : 0,
                gradScale: 0.8, step: 7)
        }
        let model = try GPT(config: config, device: device)
        try device.upload(params, to: model.parameters)
        try device.upload(grads, to: model.gradients)
        let optimizer = try AdamW(model: model, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0.1)
        try device.upload(m, to: optimizer.firstMoment)
        try device.upload(v, to: optimizer.secondMoment)
        try optimizer.update(step: 7, learningRate: 3e-3, gradientScale: 0.8)
        XCTAssertEqual(try device.download(model.parameters), try device.download(perTensor[0]))
        XCTAssertEqual(try device.download(optimizer.firstMoment), try device.download(perTensor[2]))
        XCTAssertEqual(try device.download(optimizer.secondMoment), try device.download(perTensor[3]))
    }

    /// ZeRO-1: one AdamW per slice (3 slices, the last shorter, their edges inside tensors that
    /// decay and tensors that do not) gives the bits of one AdamW over the whole buffer.
    func testUpdatesOfEachSliceEqualOneUpdateOfTheWholeBuffer() throws {
        let device = Device.cpu(threads: 2)
        let config = GPTConfig(contextLength: 8, vocabularySize: 37, layers: 2, heads: 2, channels: 8)
        var generator = RandomGenerator(seed: 11)
        let layout = ParameterLayout(config: config)
        func random() -> [Float] { (0..<layout.totalCount).map { _ in Float(generator.nextNormal()) } }
        let params = random(), grads = random(), m = random(), v = random().map { $0 * $0 }
        func model() throws -> GPT {
            let model = try GPT(config: config, device: device)
            try device.upload(params, to: model.parameters)
            try device.upload(grads, to: model.gradients)
            return model
        }
        let whole = try model()
        let optimizer = try AdamW(model: whole, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0.1)
        try device.upload(m, to: optimizer.firstMoment)
        try device.upload(v, to: optimizer.secondMoment)
        try optimizer.update(step: 3, learningRate: 3e-3, gradientScale: 0.7)
        let sliced = try model()
        let slices = OptimizerSlices(total: layout.totalCount, ranks: 3)
        XCTAssertNotEqual(slices.range(of: 2).count, slices.length, "the last slice is the shorter one here")
        var firstMoments: [Float] = [], secondMoments: [Float] = []
        for rank in 0..<3 {
            let range = slices.range(of: rank)
            let part = try AdamW(
                model: sliced, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0.1, slice: range)
            XCTAssert(part.isSliced)
            try device.upload(Array(m[range]), to: part.firstMoment)
            try device.upload(Array(v[range]), to: part.secondMoment)
            try part.update(step: 3, learningRate: 3e-3, gradientScale: 0.7)
            firstMoments += try device.download(part.firstMoment)
            secondMoments += try device.download(part.secondMoment)
        }
        XCTAssertEqual(try device.download(sliced.parameters), try device.download(whole.parameters))
        XCTAssertEqual(firstMoments, try device.download(optimizer.firstMoment))
        XCTAssertEqual(secondMoments, try device.download(optimizer.secondMoment))
    }

    func testSlicesCoverTheBufferInRankOrderAndClipTheDecayRanges() {
        let slices = OptimizerSlices(total: 10, ranks: 4)
        XCTAssertEqual((0..<4).map { slices.range(of: $0) }, [0..<3, 3..<6, 6..<9, 9..<10])
        XCTAssertEqual(OptimizerSlices(total: 5, ranks: 4).range(of: 3), 5..<5)
        XCTAssertEqual(OptimizerSlices.ranges([0..<2, 4..<8, 9..<10], within: 3..<6), [1..<3])
        XCTAssertEqual(OptimizerSlices.ranges([0..<2, 4..<8], within: 8..<10), [])
    }
}
