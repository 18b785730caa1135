import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Save and load throughput of a whole checkpoint (weights and both AdamW moments).
public enum CheckpointBenchmark {
    public struct Round {
        /// Write both files and state.json, fsync, rename into place, update `latest`.
        public let saveSeconds: Double
        /// Verify every checksum, read both files and upload into the model and optimizer, with
        /// the files evicted from the page cache first (a cold read from disk).
        public let loadSeconds: Double
    }

    public struct Result {
        public let parameters: Int
        public let bytes: Int
        public let rounds: [Round]
    }

    /// Saves and loads `roundCount` times (each save into a fresh folder, as training does).
    public static func run(model config: GPTConfig, folder: URL, device: Device, roundCount: Int = 5) throws -> Result {
        let model = try GPT(config: config, device: device)
        try model.initializeParameters(seed: 1)
        let optimizer = try AdamW(model: model, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0.1)
        try device.copy(model.parameters, to: optimizer.firstMoment)
        try device.copy(model.parameters, to: optimizer.secondMoment)
        let store = CheckpointStore(runFolder: folder)
        var training = TrainingConfig()
        training.model = config
        let fingerprint = DataFingerprint(
            train: TokenDataset(shards: [], sequenceLength: config.contextLength), val: nil)

        let tensors = CheckpointTensors(
            device: device, parameters: model.parameters, firstMoment: optimizer.firstMoment,
            secondMoment: optimizer.secondMoment)
        let saved = try device.download(model.parameters)
        var rounds: [Round] = []
        for _ in 0..<roundCount {
            try? FileManager.default.removeItem(at: store.folder)
            let start = monotonicSeconds()  // what Trainer.saveCheckpoint does from here on
            let url = try store.save(
                step: 1, tensors: tensors, layout: model.layout,
                describe: { files in
                    CheckpointState(
                        state: TrainingState(), config: training, data: fingerprint, backend: device.kind.rawValue,
                        files: files)
                }, overwrite: false, log: { _ in })
            let saveSeconds = monotonicSeconds() - start
            for name in [CheckpointStore.modelFile, CheckpointStore.optimizerFile] {
                evictFromPageCache(url.appendingPathComponent(name))
            }
            try device.fill(model.parameters, with: 0)
            let loadStart = monotonicSeconds()
            _ = try CheckpointStore.verify(url)
            try CheckpointStore.loadTensors(from: url, layout: model.layout, into: tensors)
            try device.synchronize()
            let loadSeconds = monotonicSeconds() - loadStart
            guard try device.download(model.parameters) == saved else {
                throw BatonError("checkpoint benchmark: loaded weights differ from saved ones")
            }
            rounds.append(Round(saveSeconds: saveSeconds, loadSeconds: loadSeconds))
        }
        let url = store.url(step: 1)
        let bytes = [CheckpointStore.modelFile, CheckpointStore.optimizerFile, CheckpointStore.stateFile].reduce(0) {
            total, name in
            total
                + (((try? FileManager.default.attributesOfItem(atPath: url.appendingPathComponent(name).path))?[.size]
                    as? NSNumber)?.intValue ?? 0)
        }
        return Result(parameters: model.parameterCount, bytes: bytes, rounds: rounds)
    }

    /// Asks the kernel to drop a (clean, fsynced) file's pages, so the next read comes from disk.
    static func evictFromPageCache(_ url: URL) {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { return }
        posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        close(fd)
    }
}
