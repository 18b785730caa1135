import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

final class TrainingTests: XCTestCase {
    func testScheduleWarmsUpThenDecaysToTheFloor() {
        let s = LearningRateSchedule(maximum: 1e-3, minimum: 1e-4, warmupSteps: 10, totalSteps: 110)
        XCTAssertEqual(s.learningRate(atStep: 0), 1e-4, accuracy: 1e-9)
        XCTAssertEqual(s.learningRate(atStep: 9), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(s.learningRate(atStep: 10), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(s.learningRate(atStep: 60), 5.5e-4, accuracy: 1e-9)
        XCTAssertEqual(s.learningRate(atStep: 110), 1e-4, accuracy: 1e-9)
        XCTAssertEqual(s.learningRate(atStep: 500), 1e-4, accuracy: 1e-9)
        for step in 10..<109 {
            XCTAssertGreaterThanOrEqual(s.learningRate(atStep: step), s.learningRate(atStep: step + 1))
        }
    }

    func testClipScaleFollowsPyTorch() {
        XCTAssertEqual(AdamW.clipScale(norm: 0.5, maxNorm: 1), 1)
        XCTAssertEqual(AdamW.clipScale(norm: 4, maxNorm: 1), 1 / (4 + 1e-6), accuracy: 1e-9)
        XCTAssertEqual(AdamW.clipScale(norm: 4, maxNorm: 0), 1, "0 turns clipping off")
    }

    /// Same seed, same thread count: the same bits, step after step.
    func testTrainingIsBitwiseDeterministic() throws {
        func run() throws -> ([Float], [Float]) {
            let folder = try TestPaths.temporaryFolder("det")
            defer { try? FileManager.default.removeItem(at: folder) }
            var config = TrainingConfig()
            config.dataFolder = TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost").path
            config.model = GPTConfig(contextLength: 16, vocabularySize: 256, layers: 2, heads: 2, channels: 32)
            config.batchSize = 4
            config.gradientAccumulation = 2
            config.steps = 5
            config.warmupSteps = 2
            let trainer = try Trainer(
                config: config, data: try TrainingData.open(config: config, log: { _ in }),
                device: Device.cpu(threads: 2), runFolder: try RunFolder.locate(requested: folder.path), log: { _ in })
            var losses: [Float] = []
            for _ in 0..<config.steps { losses.append(try trainer.trainStep().loss) }
            return (losses, try trainer.model.device.download(trainer.model.parameters))
        }
        let (lossesA, paramsA) = try run()
        let (lossesB, paramsB) = try run()
        XCTAssertEqual(lossesA.map(\.bitPattern), lossesB.map(\.bitPattern))
        XCTAssertEqual(paramsA.map(\.bitPattern), paramsB.map(\.bitPattern))
        XCTAssertLessThan(lossesA.last!, lossesA.first!)
    }
}
