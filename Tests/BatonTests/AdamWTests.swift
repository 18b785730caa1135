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
}
