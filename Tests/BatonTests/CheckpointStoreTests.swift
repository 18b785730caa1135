import CBatonSystem
import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The checkpoint store on its own: layout of the files, verification, overwrite policy,
/// retention, resolution of --resume.
final class CheckpointStoreTests: XCTestCase {
    var run: URL!
    let config = GPTConfig(contextLength: 8, vocabularySize: 16, layers: 1, heads: 2, channels: 4)
    var layout: ParameterLayout { ParameterLayout(config: config) }

    override func setUpWithError() throws { run = try TestPaths.temporaryFolder("store") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: run) }

    let device = Device.cpu()

    /// Buffers holding parameters i * value, first moments value, second moments 2 * value.
    func tensors(_ value: Float) throws -> CheckpointTensors {
        let n = layout.totalCount
        let result = CheckpointTensors(
            device: device, parameters: try device.allocate(floats: n), firstMoment: try device.allocate(floats: n),
            secondMoment: try device.allocate(floats: n))
        try device.upload((0..<n).map { Float($0) * value }, to: result.parameters)
        try device.fill(result.firstMoment, with: value)
        try device.fill(result.secondMoment, with: value * 2)
        return result
    }

    /// What a checkpoint folder holds, loaded into fresh buffers.
    func load(_ url: URL) throws -> (parameters: [Float], firstMoment: [Float], secondMoment: [Float]) {
        let into = try tensors(0)
        try CheckpointStore.loadTensors(from: url, layout: layout, into: into)
        return (
            try device.download(into.parameters), try device.download(into.firstMoment),
            try device.download(into.secondMoment)
        )
    }

    @discardableResult
    func save(_ store: CheckpointStore, step: Int, value: Float = 1, overwrite: Bool = false) throws -> URL {
        var training = TrainingConfig()
        training.model = config
        var state = TrainingState()
        state.step = step
        state.position = LoaderPosition(epoch: 2, index: 8)
        let fingerprint = DataFingerprint(train: TokenDataset(shards: [], sequenceLength: 8), val: nil)
        return try store.save(
            step: step, tensors: try tensors(value), layout: layout,
            describe: { files in
                CheckpointState(state: state, config: training, data: fingerprint, backend: "cpu", files: files)
            }, overwrite: overwrite, log: { _ in })
    }

    func testFilesUseHuggingFaceNamesAndRoundTrip() throws {
        let store = CheckpointStore(runFolder: run)
        let url = try save(store, step: 7)
        XCTAssertEqual(url.lastPathComponent, "step-00000007")
        XCTAssertEqual(store.latestName(), "step-00000007")
        let model = try SafeTensors.read(url.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(model.entries["transformer.h.0.attn.c_attn.weight"]?.shape, [4, 12], "Conv1D layout (in, out)")
        XCTAssertEqual(model.entries["transformer.h.0.mlp.c_proj.weight"]?.shape, [16, 4])
        XCTAssertEqual(model.entries.count, 2 + 12 + 2)
        XCTAssertEqual(try ModelWeights.config(of: model), config)
        let optimizer = try SafeTensors.read(url.appendingPathComponent("optimizer.safetensors"))
        XCTAssertEqual(optimizer.entries["transformer.wte.weight.exp_avg_sq"]?.shape, [16, 4])
        let state = try CheckpointStore.verify(url)
        XCTAssertEqual(state.step, 7)
        XCTAssertEqual(state.epoch, 2)
        XCTAssertEqual(state.indexInEpoch, 8)
        let loaded = try load(url)
        // The embedding's padded rows (16 -> 64) are not stored: they load as the zeros they were filled with.
        XCTAssertEqual(layout.storedCount, layout.totalCount - (64 - 16) * 4)
        let stored = Set(layout.storedRanges.flatMap { $0 })
        XCTAssertEqual(loaded.parameters, (0..<layout.totalCount).map { stored.contains($0) ? Float($0) : 0 })
        XCTAssertEqual(loaded.firstMoment, (0..<layout.totalCount).map { stored.contains($0) ? 1 : 0 })
        XCTAssertEqual(loaded.secondMoment, (0..<layout.totalCount).map { stored.contains($0) ? 2 : 0 })
        // safetensors: 8 bytes of header length, the header, then the data: the stored floats only.
        let bytes = try Data(contentsOf: url.appendingPathComponent("model.safetensors"))
        let headerLength = bytes.prefix(8).withUnsafeBytes {
            Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)))
        }
        XCTAssertEqual(bytes.count, 8 + headerLength + layout.storedCount * 4, "the padding is not written")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: store.folder.path).filter {
            $0.hasPrefix(".")
        }
        XCTAssertEqual(leftovers, [], "no temporary folder or file is left after a save")
    }

    /// OLMo's overwrite bug: a checkpoint for step 0 exists. Without --overwrite the save fails
    /// naming the real folder and the flag; with it, the save succeeds and replaces the folder.
    func testOverwriteFlagReplacesAnExistingStepFolder() throws {
        let store = CheckpointStore(runFolder: run)
        try save(store, step: 0, value: 1)
        XCTAssertThrowsError(try save(store, step: 0, value: 2)) { error in
            let message = "\(error)"
            XCTAssert(message.contains(store.url(step: 0).path) && message.contains("--overwrite"), message)
        }
        XCTAssertEqual(try load(store.url(step: 0)).firstMoment[0], 1, "the refused save changed nothing")
        try save(store, step: 0, value: 2, overwrite: true)
        XCTAssertEqual(try load(store.url(step: 0)).firstMoment[0], 2)
        _ = try CheckpointStore.verify(store.url(step: 0))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: store.folder.path).filter {
            $0.hasPrefix(".")
        }
        XCTAssertEqual(leftovers, [])
    }

    func testACorruptFolderInTheWayIsReplacedWithoutTheFlag() throws {
        let store = CheckpointStore(runFolder: run)
        try save(store, step: 3)
        try FileManager.default.removeItem(at: store.url(step: 3).appendingPathComponent("state.json"))
        XCTAssertNoThrow(try save(store, step: 3, value: 5))
        XCTAssertEqual(try load(store.url(step: 3)).firstMoment[0], 5)
    }

    func testVerifyCatchesEveryKindOfDamage() throws {
        let store = CheckpointStore(runFolder: run)
        func damaged(_ step: Int, _ damage: (URL) throws -> Void, mentions expected: String) throws {
            let url = try save(store, step: step)
            try damage(url)
            XCTAssertThrowsError(try CheckpointStore.verify(url)) { XCTAssert("\($0)".contains(expected), "\($0)") }
        }
        try damaged(
            1, { try flipByte(in: $0.appendingPathComponent("model.safetensors"), at: 500) },
            mentions: "fails its checksum")
        try damaged(
            2, { try truncate($0.appendingPathComponent("optimizer.safetensors"), by: 10) }, mentions: "truncated")
        try damaged(
            3, { try FileManager.default.removeItem(at: $0.appendingPathComponent("state.json")) },
            mentions: "missing state.json")
        try damaged(
            4, { try Data("{\"format_version\": 1".utf8).write(to: $0.appendingPathComponent("state.json")) },
            mentions: "state.json is not valid")
        try damaged(
            5, { try FileManager.default.removeItem(at: $0.appendingPathComponent("model.safetensors")) },
            mentions: "missing model.safetensors")
    }

    func testAutoResolutionSkipsDamagedCheckpointsAndSaysWhy() throws {
        let store = CheckpointStore(runFolder: run)
        for step in [10, 20, 30] { try save(store, step: step) }
        try flipByte(in: store.url(step: 30).appendingPathComponent("model.safetensors"), at: 300)
        var notes: [String] = []
        let found = try store.resolve(.auto, log: { notes.append($0) })
        XCTAssertEqual(found?.state.step, 20)
        XCTAssert(notes.contains { $0.contains("step-00000030") && $0.contains("checksum") }, "\(notes)")
        XCTAssertThrowsError(try store.resolve(.step(30), log: { _ in })) { XCTAssert("\($0)".contains("checksum")) }
        XCTAssertThrowsError(try store.resolve(.step(25), log: { _ in })) { error in
            XCTAssert("\(error)".contains("step-00000010, step-00000020, step-00000030"), "\(error)")
        }
        XCTAssertNil(try CheckpointStore(runFolder: run.appendingPathComponent("empty")).resolve(.auto, log: { _ in }))
    }

    func testRetentionKeepsTheNewestAndTheMilestones() throws {
        let store = CheckpointStore(runFolder: run)
        for step in stride(from: 10, through: 100, by: 10) {
            try save(store, step: step)
            store.applyRetention(keepLast: 3, keepEvery: 40, protected: step)
        }
        XCTAssertEqual(store.steps(), [40, 80, 90, 100])
    }

    func testAnInterruptedReplacementIsPutBack() throws {
        let store = CheckpointStore(runFolder: run)
        try save(store, step: 4)
        // As if a crash hit between moving the old folder aside and moving the new one in.
        try FileManager.default.moveItem(
            at: store.url(step: 4), to: store.folder.appendingPathComponent(".old-step-00000004-999"))
        try FileManager.default.createDirectory(
            at: store.folder.appendingPathComponent(".tmp-step-00000004-999"), withIntermediateDirectories: false)
        store.removeAbandonedSaves(log: { _ in })
        XCTAssertNoThrow(try CheckpointStore.verify(store.url(step: 4)))
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: store.folder.path).filter { $0.hasPrefix(".") }, [])
    }

    func testResumeRequestParsing() {
        XCTAssertEqual(ResumeRequest("auto"), .auto)
        XCTAssertEqual(ResumeRequest("step-120"), .step(120))
        XCTAssertEqual(ResumeRequest("step-00000120"), .step(120))
        XCTAssertEqual(ResumeRequest("runs/x/checkpoints/step-00000120"), .path("runs/x/checkpoints/step-00000120"))
    }

    func testCRC32CKnownValue() {
        // The standard check value of CRC-32C for "123456789".
        let bytes = Array("123456789".utf8)
        XCTAssertEqual(bytes.withUnsafeBytes { baton_crc32c_for_tests($0) }, 0xE306_9283)
    }
}

func baton_crc32c_for_tests(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    baton_crc32c(0, bytes.baseAddress, bytes.count)
}
