import Foundation
import XCTest
@testable import Baton

final class TrainingTests: XCTestCase {
    func testScheduleWarmsUpThenDecaysToTheFloor() {
        let s = LearningRateSchedule(maximum: 1e-3, minimum: 1e-4, warmupSteps: 10, totalSteps: 110)
        XCTAssertEqual(s.learningRate(atStep: 0), 1e-4, accuracy: 1e-9)
        XCTAssertEqual(s.learningRate(atStep: 9), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(s.learningRate(atStep: 10), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(s.learningRate(atStep: 60), 5.5e-4, accuracy: 1e-9)
        XCTAssertEqual(s.learningRate(atStep: 110), 1e-4, accuracy: 1e-9)
        XCTAssertEqual(s.learningRate(atStep: 500), 1e-4, accuracy: 1e-9)
        for step in 10..<109 { XCTAssertGreaterThanOrEqual(s.learningRate(atStep: step), s.learningRate(atStep: step + 1)) }
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
            let trainer = try Trainer(config: config, data: try TrainingData.open(config: config, log: { _ in }), device: Device.cpu(threads: 2), runFolder: try RunFolder.locate(requested: folder.path), log: { _ in })
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

/// The CPU backend gives the same bits whatever the thread count: work is cut into pieces that do
/// not depend on it (see baton_cpu.h). Shapes where every matmul has several pieces (512 rows).
final class ThreadCountTests: XCTestCase {
    /// A device's thread count is its own: opening another device does not change it.
    func testEachDeviceKeepsItsOwnThreadCount() {
        let three = Device.cpu(threads: 3)
        let one = Device.cpu(threads: 1)
        let blas = three.hardware.blas ?? "?"
        XCTAssertEqual(three.summary, "cpu (3 threads, \(blas))")
        XCTAssertEqual(one.summary, "cpu (1 thread, \(blas))")
    }

    func testOneTwoAndThreeThreadsTrainToTheSameBits() throws {
        let folder = try TestPaths.temporaryFolder("threads")
        defer { try? FileManager.default.removeItem(at: folder) }
        var weights: [Data] = [], metrics: [[StepMetrics]] = []
        for threads in [1, 2, 3] {
            let run = folder.appendingPathComponent("t\(threads)")
            let result = try runBaton(["train", "--out", run.path, "--device", "cpu", "--threads", "\(threads)", "--layers", "2", "--heads", "4",
                                       "--embd", "64", "--seq-len", "64", "--batch", "8", "--steps", "12", "--eval-every", "6", "--eval-batches", "2"])
            XCTAssertEqual(result.status, 0, result.stderr)
            weights.append(try Data(contentsOf: CheckpointStore(runFolder: run).url(step: 12).appendingPathComponent("model.safetensors")))
            metrics.append(try MetricsLog.read(run.appendingPathComponent("metrics.jsonl")).map { var m = $0; m.tokensPerSecond = 0; return m })
        }
        XCTAssertEqual(metrics[0].count, 12)
        XCTAssert(weights[0] == weights[1] && weights[1] == weights[2], "the weights after 12 steps differ between 1, 2 and 3 threads")
        XCTAssert(metrics[0] == metrics[1] && metrics[1] == metrics[2], "the losses or gradient norms differ between 1, 2 and 3 threads")
    }
}
