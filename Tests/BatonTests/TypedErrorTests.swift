import CBatonABI
import CBatonCPU
import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// Code that reacts to a particular failure matches a case of BatonError, never its text: each case
/// below is thrown and caught by type.
final class TypedErrorTests: FolderTestCase {
    func store() -> CheckpointStore { CheckpointStore(runFolder: folder.appendingPathComponent("run")) }

    func save(_ store: CheckpointStore, step: Int, midSave: ((Int, URL) throws -> Void)? = nil) throws {
        let model = try GPT(
            config: GPTConfig(contextLength: 8, vocabularySize: 16, layers: 1, heads: 2, channels: 4),
            device: Device.cpu(threads: 1))
        let optimizer = try AdamW(model: model, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0)
        try saveCheckpoint(model, optimizer, run: store.runFolder, step: step, midSave: midSave)
    }

    func testSavingOntoAGoodCheckpointIsCheckpointExists() throws {
        let store = store()
        try save(store, step: 3)
        XCTAssertThrowsError(try save(store, step: 3)) { error in
            guard case BatonError.checkpointExists(let path) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, store.url(step: 3).path)
            XCTAssert("\(error)".hasSuffix("pass --overwrite to replace it"))
        }
    }

    func testAFullDiskDuringASaveIsCheckpointDiskFull() throws {
        let store = store()
        try save(store, step: 1)
        let full: (Int, URL) throws -> Void = { _, folder in
            throw BatonError.fileWriteFailed(
                path: folder.appendingPathComponent("optimizer.safetensors").path, what: "write failed", code: ENOSPC,
                neededBytes: 64)
        }
        XCTAssertThrowsError(try save(store, step: 2, midSave: full)) { error in
            guard case BatonError.checkpointDiskFull(let checkpoint, let needed, _, _) = error else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(checkpoint, "step-00000002")
            XCTAssertGreaterThan(needed, 0)
        }
        // Another write error is not a full disk: it passes through as it is.
        let denied: (Int, URL) throws -> Void = { _, folder in
            throw BatonError.fileWriteFailed(path: folder.path, what: "write failed", code: EACCES, neededBytes: 64)
        }
        XCTAssertThrowsError(try save(store, step: 2, midSave: denied)) { error in
            guard case BatonError.fileWriteFailed(_, _, EACCES, _) = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(store.steps(), [1], "neither failed save left a checkpoint")
    }

    func testNoValidationShardsIsNoShardsAndTrainingGoesOn() throws {
        let data = folder.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try TokenShard.write(
            tokens: (0..<400).map { UInt16($0 % 256) }, to: data.appendingPathComponent("x_train_0.bin"))
        XCTAssertThrowsError(try TokenDataset.open(folder: data, split: "val", sequenceLength: 8, vocabularySize: 256))
        { error in
            guard case BatonError.noShards(_, "val") = error else { return XCTFail("\(error)") }
        }
        var config = TrainingConfig()
        config.dataFolder = data.path
        config.model.contextLength = 8
        var lines: [String] = []
        let opened = try TrainingData.open(config: config, log: { lines.append($0) })
        XCTAssertNil(opened.validation)
        XCTAssertEqual(lines, ["warning: no *val*.bin shard in \(data.path); no validation loss"])
    }

    /// A stand-in GPU table whose context refuses to open with a given status.
    func refusingTable(_ status: baton_status) -> UnsafePointer<baton_backend_table> {
        let table = UnsafeMutablePointer<baton_backend_table>.allocate(capacity: 1)
        table.initialize(to: baton_cpu_get_table()!.pointee)
        switch status {
        case BATON_ERROR_NO_DRIVER:
            table.pointee.create_context = { _, _, message, size in
                _ = strncpy(message!, "driver too old", size); return BATON_ERROR_NO_DRIVER
            }
        case BATON_ERROR_NO_DEVICE:
            table.pointee.create_context = { _, _, message, size in
                _ = strncpy(message!, "no device 0", size); return BATON_ERROR_NO_DEVICE
            }
        default:
            table.pointee.create_context = { _, _, message, size in
                _ = strncpy(message!, "it broke", size); return BATON_ERROR_DEVICE
            }
        }
        return UnsafePointer(table)
    }

    func testAGPUThatWillNotOpenIsBackendUnavailableByItsStatusCode() throws {
        let expected: [(baton_status, BackendUnavailable)] = [
            (BATON_ERROR_NO_DRIVER, .noDriver(detail: "driver too old")),
            (BATON_ERROR_NO_DEVICE, .noDevice(detail: "no device 0")),
            (BATON_ERROR_DEVICE, .cannotOpen(detail: "it broke")),
        ]
        for (status, reason) in expected {
            XCTAssertThrowsError(try Device.gpu(table: refusingTable(status), deviceIndex: 0)) { error in
                XCTAssertEqual(error as? BatonError, .backendUnavailable(reason))
            }
        }
        XCTAssertEqual(
            BatonError.backendUnavailable(.noDriver(detail: "x")).message, "--device cuda: no usable NVIDIA driver (x)")
    }

    func testAutoFallsBackOnAnyBackendUnavailableAndSaysWhy() throws {
        setenv("BATON_CUDA_LIBRARY", "/nonexistent/libbaton_cuda.so", 1)
        defer { unsetenv("BATON_CUDA_LIBRARY") }
        var said = ""
        let device = try DeviceSelection.open(.auto, threads: 1, log: { said = $0 })
        XCTAssertEqual(device.kind, .cpu)
        XCTAssertEqual(
            said,
            "auto picked cpu: no CUDA backend library at /nonexistent/libbaton_cuda.so (build it with cmake, see "
                + "the README, or set BATON_CUDA_LIBRARY)"
        )
    }
}
