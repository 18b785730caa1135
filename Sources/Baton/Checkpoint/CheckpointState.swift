import Foundation

/// state.json: the whole training state besides the tensors, the config, the data fingerprint,
/// who wrote it, and a CRC32C of every other file in the checkpoint.
public struct CheckpointState: Codable, Equatable {
    /// 2: the unused shuffle_seed and rng_state fields are gone (the data order follows from
    /// config.seed). Version 1 files still load: their two extra fields are ignored.
    public static let currentFormatVersion = 2
    public static let readableFormatVersions = 1...2

    public struct FileCheck: Codable, Equatable {
        public var bytes: Int
        /// CRC32C of the whole file, 8 hex digits.
        public var crc32c: String
    }

    public var formatVersion: Int
    public var step: Int
    public var epoch: Int
    public var indexInEpoch: Int
    public var tokensSeen: Int
    public var lastLoss: Float?
    public var skippedUpdates: Int
    /// The spike guards' windows (TrainingState), oldest first; absent in files from before them.
    public var lossWindow: [Float]?
    public var gradientNormWindow: [Float]?
    public var config: TrainingConfig
    public var data: DataFingerprint
    public var backend: String
    /// What computed it (absent in checkpoints from before 0.x): a resume on other hardware says
    /// its bits will differ from an uninterrupted run's.
    public var hardware: HardwareRecord?
    /// How many ranks wrote it (information only: any world size resumes it).
    public var worldSize: Int?
    public var batonVersion: String
    public var savedAt: String
    public var files: [String: FileCheck]

    /// state.json's keys: the file format's snake case.
    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", step, epoch, indexInEpoch = "index_in_epoch", tokensSeen = "tokens_seen",
            lastLoss = "last_loss", skippedUpdates = "skipped_updates", lossWindow = "loss_window",
            gradientNormWindow = "grad_norm_window", config, data, backend, hardware,
            worldSize = "world_size", batonVersion = "baton_version", savedAt = "saved_at", files
    }

    public init(
        state: TrainingState, config: TrainingConfig, data: DataFingerprint, backend: String,
        hardware: HardwareRecord? = nil,
        worldSize: Int? = nil, files: [String: FileCheck]
    ) {
        formatVersion = CheckpointState.currentFormatVersion
        step = state.step
        epoch = state.position.epoch
        indexInEpoch = state.position.index
        tokensSeen = state.tokensSeen
        lastLoss = state.lastLoss.flatMap { $0.isFinite ? $0 : nil }
        skippedUpdates = state.skippedUpdates
        lossWindow = state.lossWindow.values
        gradientNormWindow = state.gradientNormWindow.values
        self.config = config
        self.data = data
        self.backend = backend
        self.hardware = hardware
        self.worldSize = worldSize
        batonVersion = Baton.batonVersion
        savedAt = ISO8601DateFormatter().string(from: Date())
        self.files = files
    }

    /// The training state this checkpoint restores.
    public var trainingState: TrainingState {
        var state = TrainingState()
        state.step = step
        state.position = LoaderPosition(epoch: epoch, index: indexInEpoch)
        state.tokensSeen = tokensSeen
        state.lastLoss = lastLoss
        state.skippedUpdates = skippedUpdates
        state.lossWindow = SpikeWindow(values: lossWindow ?? [])
        state.gradientNormWindow = SpikeWindow(values: gradientNormWindow ?? [])
        return state
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    public static func decode(_ data: Data, path: String) throws -> CheckpointState {
        let state: CheckpointState
        do { state = try JSONDecoder().decode(CheckpointState.self, from: data) } catch {
            throw BatonError("\(path): state.json is not valid (\(describeDecodingError(error)))")
        }
        guard readableFormatVersions.contains(state.formatVersion) else {
            throw BatonError(
                "\(path): state.json format version \(state.formatVersion) is not supported (this baton reads "
                    + "\(readableFormatVersions.lowerBound) to \(readableFormatVersions.upperBound))"
            )
        }
        guard state.step >= 0, state.epoch >= 0, state.indexInEpoch >= 0, state.tokensSeen >= 0,
            state.skippedUpdates >= 0,
            state.skippedUpdates <= state.step, state.files.values.allSatisfy({ $0.bytes >= 0 })
        else {
            throw BatonError("\(path): state.json has a negative step or position")
        }
        for (key, window) in [("loss_window", state.lossWindow), ("grad_norm_window", state.gradientNormWindow)] {
            guard let window else { continue }
            guard window.count <= SpikeWindow.length, window.allSatisfy({ $0.isFinite }) else {
                throw BatonError(
                    "\(path): state.json's \(key) must hold at most \(SpikeWindow.length) finite numbers")
            }
        }
        // A config out of range here came from the file, not from a flag: named as such.
        try state.config.validate(file: "\(path): state.json")
        return state
    }
}

func describeDecodingError(_ error: Error) -> String {
    switch error {
    case DecodingError.keyNotFound(let key, _): return "missing \(key.stringValue)"
    case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
        return "bad value at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
    case DecodingError.dataCorrupted(let context): return context.debugDescription
    default: return "\(error)"
    }
}
