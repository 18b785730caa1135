import CBatonSystem
import Foundation

/// Opens a run for training: takes the run folder for this process, finds the checkpoint to
/// resume from (or checks that a fresh start may use the folder), settles the config, opens the
/// data once, builds the Trainer, and only then records config.json and trims the logs to the
/// resumed step. Each check that keeps a run folder from being trained over by accident is here.
public enum RunOpener {
    public struct Request {
        /// `--out`, or nil for a new folder under runs/.
        public var out: String?
        public var resume: ResumeRequest?
        /// The config values given on the command line, over the defaults (fresh) or the
        /// checkpoint's config (resumed).
        public var overrides: TrainingConfig.Overrides
        public var options: RunOptions
        /// --init-from: a Hugging Face folder (GPT-2 or the Llama family), or a Baton run or checkpoint, to
        /// start a fresh run from (weights only).
        public var initFrom: URL?
        /// The command line, which every rank of a job must share.
        public var arguments: [String] = []

        public init(
            out: String?, resume: ResumeRequest?, overrides: TrainingConfig.Overrides, options: RunOptions,
            initFrom: URL? = nil
        ) {
            self.out = out
            self.resume = resume
            self.overrides = overrides
            self.options = options
            self.initFrom = initFrom
        }
    }

    public static func open(_ request: Request, device: Device, log: @escaping (String) -> Void) throws -> Trainer {
        if let parallel = request.options.parallel, parallel.size > 1 {
            // Rank 0 opens the run and hands the others what it decided; then all check they agree.
            try agreeOnArguments(request.arguments, parallel)
            let trainer =
                parallel.rank == 0
                ? try openAlone(request, device: device, log: log)
                : try follow(request, parallel: parallel, device: device, log: log)
            if parallel.rank == 0 { _ = try parallel.communicator.broadcast(try Handoff(trainer).encoded()) }
            try agree(trainer, parallel)
            return trainer
        }
        return try openAlone(request, device: device, log: log)
    }

    /// What rank 0 decided, for the other ranks.
    struct Handoff: Codable {
        var config: TrainingConfig
        var checkpoint: String?
        var runFolder: String
        init(_ trainer: Trainer) {
            config = trainer.config
            checkpoint = trainer.restoredFrom?.path
            runFolder = trainer.runFolder.url.path
        }
        func encoded() throws -> String { String(decoding: try JSONEncoder().encode(self), as: UTF8.self) }
    }

    private static func follow(
        _ request: Request, parallel: DataParallel, device: Device, log: @escaping (String) -> Void
    ) throws -> Trainer {
        let text = try parallel.communicator.broadcast("")
        let handoff = try JSONDecoder().decode(Handoff.self, from: Data(text.utf8))
        let data = try TrainingData.open(config: handoff.config, log: { _ in })
        let restoring = try handoff.checkpoint.map { try VerifiedCheckpoint(verifying: URL(fileURLWithPath: $0)) }
        let trainer = try Trainer(
            config: handoff.config, data: data, device: device,
            runFolder: RunFolder(url: URL(fileURLWithPath: handoff.runFolder)),
            restoring: restoring, options: request.options, log: log)
        if restoring == nil, let source = handoff.config.initFrom {
            try HuggingFaceModel(folder: URL(fileURLWithPath: source.folder)).load(into: trainer.model)
        }
        return trainer
    }

    /// Before anything is opened: every rank was started with the same command line.
    private static func agreeOnArguments(_ arguments: [String], _ parallel: DataParallel) throws {
        try parallel.communicator.agree(
            digest(Data(arguments.dropFirst().joined(separator: "\u{0}").utf8)),
            "was started with other arguments than rank 0; start every rank with the same command")
    }

    /// Every rank must train the same run on the same data from the same step: a digest of the
    /// config, the data's fingerprint and the step, compared across ranks.
    private static func agree(_ trainer: Trainer, _ parallel: DataParallel) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var bytes =
            try encoder.encode(trainer.config) + encoder.encode(trainer.fingerprint)
            + encoder.encode(trainer.dataContentDigest)
        bytes.append(contentsOf: withUnsafeBytes(of: Int64(trainer.state.step)) { Array($0) })
        try parallel.communicator.agree(
            digest(bytes),
            "disagrees with rank 0 on the config, the data or the checkpoint; give every rank the same flags and data")
    }

    private static func digest(_ bytes: Data) -> UInt32 {
        bytes.withUnsafeBytes { baton_crc32c(0, $0.baseAddress, $0.count) }
    }

    private static func openAlone(_ request: Request, device: Device, log: @escaping (String) -> Void) throws -> Trainer
    {
        if request.resume != nil && request.out == nil {
            throw BatonError("--resume needs --out RUN, the run folder to continue")
        }
        let runFolder = try RunFolder.locate(requested: request.out)
        // Before the lock is taken, so nothing is written into the data: the data named on the
        // command line, else the run's own (its config.json), else the default.
        let data =
            request.overrides.value("dataFolder", as: String.self)
            ?? (request.resume != nil ? runFolder.readConfig()?.dataFolder : nil) ?? TrainingConfig().dataFolder
        try refuseRunInsideData(runFolder.url, URL(fileURLWithPath: data))
        let existed = FileManager.default.fileExists(atPath: runFolder.url.path)
        let lockExisted = FileManager.default.fileExists(atPath: runFolder.url.appendingPathComponent(".lock").path)
        // Everything below may change the folder: take it for this process alone first.
        let lock = try RunLock(runFolder: runFolder.url)
        do {
            let trainer = try open(request, runFolder: runFolder, device: device, log: log)
            trainer.lock = lock
            return trainer
        } catch {
            // Leave no empty folder, and no lock file of ours, behind when a start fails its checks.
            if !existed {
                try? FileManager.default.removeItem(at: lock.url);
                try? FileManager.default.removeItem(at: runFolder.url)
            } else if !lockExisted {
                try? FileManager.default.removeItem(at: lock.url)
            }
            throw error
        }
    }

    private static func open(
        _ request: Request, runFolder: RunFolder, device: Device, log: @escaping (String) -> Void
    ) throws -> Trainer {
        let store = CheckpointStore(runFolder: runFolder.url)
        store.removeAbandonedSaves(log: log)
        var found: VerifiedCheckpoint?
        if let resume = request.resume {
            found = try store.resolve(resume, log: log)
            if found == nil { log("checkpoint: none in \(store.folder.path); starting fresh") }
        } else if runFolder.holdsRun || !store.steps().isEmpty {
            guard request.options.overwrite else {
                let have = store.steps().map { CheckpointStore.name(step: $0) }
                throw BatonError(
                    "--out \(runFolder.url.path) already holds a "
                        + "run\(have.isEmpty ? "" : " (checkpoints \(have.joined(separator: ", ")))"); pass --resume "
                        + "auto to continue it, or --overwrite to start over"
                )
            }
        }
        if request.initFrom != nil && request.resume != nil {
            throw BatonError(
                "--init-from starts a run; to continue one, drop it (the checkpoint holds the weights) and keep "
                    + "--resume"
            )
        }
        let initial = try request.initFrom.map { try HuggingFaceModel(folder: $0) }
        // The base config: the checkpoint's; for a --resume that finds no checkpoint, the one the
        // run was started with (its config.json); else the defaults.
        let saved = found == nil && request.resume != nil ? runFolder.readConfig() : nil
        try saved?.validate(file: runFolder.configURL.path)
        let base = found?.state.config ?? saved ?? TrainingConfig()
        var config = try base.applying(request.overrides)
        if let initial {
            try adopt(initial, into: &config, overrides: request.overrides)
        }
        try config.validate()
        // Record where the data is absolutely, so a resume from another directory finds it.
        config.dataFolder = URL(fileURLWithPath: config.dataFolder).standardizedFileURL.path
        try refuseRunInsideData(runFolder.url, URL(fileURLWithPath: config.dataFolder))
        // Data prepared with a BPE tokenizer says its vocabulary; a fresh run takes it unless told.
        if found == nil, initial == nil, !request.overrides.given("model.vocabularySize"),
            let record = try DatasetRecord.read(dataFolder: URL(fileURLWithPath: config.dataFolder))
        {
            config.model.vocabularySize = record.vocabularySize
            log(
                "data: \(record.tokenizer) tokens (\(CorpusPreparation.datasetFile)): vocabulary "
                    + "\(record.vocabularySize)"
            )
        }
        if let found { try checkShape(config, against: found) }
        // A new run without --precision takes the device's default, recorded in its config, so a
        // resume (here, on another GPU or on the CPU) keeps it.
        if found == nil, config.precision == nil {
            let precision = Precision.defaultFor(device)
            if precision != .fp32 {
                config.precision = precision
                log(
                    "precision: \(precision.rawValue) by default on this GPU (--precision fp32 or tf32 to choose "
                        + "another)"
                )
            }
        }
        let data = try TrainingData.open(config: config, log: log)
        // The global batch defines the run: recorded at its start, kept on resume at any world size.
        let world = request.options.parallel?.size ?? 1
        if config.globalBatch == nil { config.globalBatch = config.batchSize * config.gradientAccumulation * world }
        if let epochs = config.epochs {  // the total steps follow from the data
            config.steps = max(
                1, epochs * (data.train.sampleCount / config.batchSize) / (config.globalBatch! / config.batchSize))
        }

        let trainer: Trainer
        if let found {
            try checkData(
                data.fingerprint, against: found, config: config, allowChange: request.options.allowDataChange, log: log
            )
            let allowed: Set<String> = request.options.allowBatchChange ? ["--allow-batch-change"] : []
            for change in try changes(from: found.state.config, to: config, allowing: allowed) {
                log("resume: \(change)")
            }
            if let saved = found.state.hardware, saved.bitsIdentity != device.hardware.bitsIdentity {
                log(
                    "resume: \(found.url.lastPathComponent) was computed on \(saved.description); this is "
                        + "\(device.hardware.description): the run continues exactly from the saved state, but its "
                        + "bits will differ from an uninterrupted run on the original hardware"
                )
            }
            try refuseFork(from: found, store: store, request: request, runFolder: runFolder, log: log)
            log(
                "resume: from \(found.url.path) (step \(found.state.step), epoch \(found.state.epoch), index "
                    + "\(found.state.indexInEpoch) in the epoch)"
            )
            trainer = try Trainer(
                config: config, data: data, device: device, runFolder: runFolder, restoring: found,
                options: request.options, log: log)
        } else {
            let replaced = try setAsidePreviousRun(runFolder: runFolder, store: store, log: log)
            trainer = try Trainer(
                config: config, data: data, device: device, runFolder: runFolder, options: request.options, log: log)
            trainer.replacedCheckpoints = replaced
            if let initial {
                try initial.load(into: trainer.model)
                log(
                    "init: weights from \(initial.folder.path) "
                        + "(\(initial.checksums.keys.sorted().joined(separator: ", ")))"
                )
            }
        }
        try runFolder.writeConfig(
            RunFolder.Record(
                batonVersion: batonVersion, device: device.summary, parameters: trainer.model.parameterCount,
                trainData: data.train.description, valData: data.validation?.description ?? "none", config: config))
        // Every step appears once in the logs, even after a crash that outlived its checkpoint.
        try MetricsLog.truncate(runFolder.metricsURL, afterStep: trainer.state.step)
        if let ledger = request.options.sampleLedger { try MetricsLog.truncate(ledger, afterStep: trainer.state.step) }
        return trainer
    }

    /// A run writes checkpoints, metrics and its config into its folder: never into its data folder
    /// (where the shards would be mixed with them and a later prepare would refuse the folder).
    private static func refuseRunInsideData(_ run: URL, _ data: URL) throws {
        let runPath = FilePaths.canonical(run), dataPath = FilePaths.canonical(data)
        guard FilePaths.within(runPath, dataPath) else { return }
        throw BatonError.invalidFlag(
            flag: "--out",
            message:
                "--out \(run.path) is or lies inside --data \(data.path); a run never writes into its data: choose "
                + "a run folder outside it"
        )
    }

    /// A run started from a Hugging Face folder takes its shape; a flag that says otherwise is an error.
    /// One exception: a Llama-family model has no position table, so it may train on sequences
    /// shorter than its max_position_embeddings (`--seq-len`, at most that).
    private static func adopt(
        _ initial: HuggingFaceModel, into config: inout TrainingConfig, overrides: TrainingConfig.Overrides
    ) throws {
        let theirs = initial.config, source = initial.folder.appendingPathComponent("config.json").path
        var shorter: Int?
        for entry in SettingTable.entries(of: theirs, prefix: "model.") {
            guard overrides.given(entry.key), !entry.setting.holds(json: overrides.valueText(entry.key)) else {
                continue
            }
            if entry.key == "model.contextLength", theirs.architecture == .llama,
                let length = overrides.value(entry.key, as: Int.self)
            {
                guard length <= theirs.contextLength else {
                    throw BatonError.invalidFlag(
                        flag: entry.flag,
                        message:
                            "\(entry.flag) \(length) is longer than max_position_embeddings \(theirs.contextLength) in "
                            + "\(source); a run from it trains on sequences of at most that")
                }
                shorter = length
                continue
            }
            throw BatonError.invalidFlag(
                flag: entry.flag,
                message:
                    "\(entry.flag) \(overrides.valueText(entry.key)) conflicts with \(source), which says "
                    + "\(entry.valueText); drop the flag")
        }
        // A --config file's recorded start: the same weights, or the run would not be the one recorded.
        if let recorded = overrides.initFrom, recorded.files != initial.checksums {
            func crcs(_ files: [String: String]) -> String {
                files.sorted { $0.key < $1.key }.map(\.value).joined(separator: ", ")
            }
            throw BatonError.invalidFlag(
                flag: "--config",
                message: "--config: initFrom names \(initial.folder.path), whose weights are not the ones the run "
                    + "recorded (CRC32C \(crcs(initial.checksums)), recorded \(crcs(recorded.files))); pass "
                    + "--init-from to start from them anyway")
        }
        config.model = theirs
        if let shorter { config.model.contextLength = shorter }
        config.initFrom = TrainingConfig.InitSource(
            folder: initial.folder.standardizedFileURL.path, files: initial.checksums)
    }

    /// A resumed run keeps its shape (see `changes`), and the checkpoint's config must agree with
    /// its own (size-checked) model file before anything is allocated from it.
    private static func checkShape(_ config: TrainingConfig, against found: VerifiedCheckpoint) throws {
        let saved = found.state.config
        if config.model != saved.model {
            // Name the first setting that differs; the shapes in words follow.
            let differing = zip(SettingTable.entries(of: config.model), SettingTable.entries(of: saved.model)).first {
                $0.recordedText != $1.recordedText
            }
            let setting =
                differing.map { "\($0.flag) \($0.valueText) differs from the checkpoint's \($1.valueText): " } ?? ""
            throw BatonError(
                "\(setting)the model shape given (\(describe(config.model))) differs from checkpoint "
                    + "\(found.url.lastPathComponent)'s (\(describe(saved.model))); a resumed run keeps its shape"
            )
        }
        let expectedBytes = ParameterLayout(config: config.model).storedCount * 4
        let modelBytes = found.state.files[CheckpointStore.modelFile]?.bytes ?? 0
        guard expectedBytes <= modelBytes else {
            throw BatonError(
                "\(found.url.path): state.json describes a model of \(expectedBytes) bytes, but model.safetensors "
                    + "holds \(modelBytes)"
            )
        }
    }

    private static func checkData(
        _ fingerprint: DataFingerprint, against found: VerifiedCheckpoint, config: TrainingConfig,
        allowChange: Bool, log: (String) -> Void
    ) throws {
        guard fingerprint != found.state.data else { return }
        let difference = fingerprint.difference(from: found.state.data)
        guard allowChange else {
            throw BatonError(
                "--data \(config.dataFolder): not the data step \(found.state.step) was trained on (\(difference)); "
                    + "pass --allow-data-change to resume on it anyway"
            )
        }
        log("warning: resuming on changed data (\(difference)), as --allow-data-change asks")
    }

    /// Checkpoints newer than an explicitly chosen one belong to a future this run is about to
    /// rewrite: auto-resume after a crash must not jump back into it. (Auto-resume only passes
    /// over newer checkpoints that are corrupt; saving replaces those.)
    private static func refuseFork(
        from found: VerifiedCheckpoint, store: CheckpointStore, request: Request,
        runFolder: RunFolder, log: (String) -> Void
    ) throws {
        let newer = request.resume == .auto ? [] : store.steps().filter { $0 > found.state.step }
        guard !newer.isEmpty else { return }
        let names = newer.map { CheckpointStore.name(step: $0) }.joined(separator: ", ")
        guard request.options.overwrite else {
            throw BatonError(
                "--resume: \(runFolder.url.path) has checkpoints after \(found.url.lastPathComponent) (\(names)); "
                    + "resuming from it would fork the run: pass --overwrite to delete them"
            )
        }
        for step in newer { store.delete(step: step) }
        log("checkpoint: deleted \(names), newer than \(found.url.lastPathComponent) (--overwrite)")
    }

    /// A fresh start with --overwrite moves the old checkpoints aside (deleted once the new run
    /// has its own first checkpoint) and clears the old metrics.
    private static func setAsidePreviousRun(
        runFolder: RunFolder, store: CheckpointStore, log: (String) -> Void
    ) throws -> URL? {
        try? FileManager.default.removeItem(at: runFolder.metricsURL)
        guard FileManager.default.fileExists(atPath: store.folder.path) else { return nil }
        let aside = runFolder.url.appendingPathComponent("checkpoints-replaced-\(Int(Date().timeIntervalSince1970))")
        do { try FileManager.default.moveItem(at: store.folder, to: aside) } catch {
            throw BatonError(
                "\(store.folder.path): cannot move the previous run's checkpoints aside (\(error.localizedDescription))"
            )
        }
        log(
            "checkpoint: --overwrite: moved the previous run's checkpoints to \(aside.path) until this run saves "
                + "its first"
        )
        return aside
    }

    static func describe(_ model: GPTConfig) -> String { model.summary }

    /// What a resume does with each setting that differs from the checkpoint's, by its declaration:
    /// a refusal (naming the flag that lifts it, if one does), or "learningRate changed: 0.001 ->
    /// 0.0005" for each that may change with a notice. A setting the checkpoint did not record
    /// (unset) is being recorded, not changed. The shape is refused earlier (checkShape), in its
    /// own words.
    static func changes(
        from saved: TrainingConfig, to new: TrainingConfig, allowing allowed: Set<String> = []
    ) throws -> [String] {
        var notices: [String] = []
        for (before, after) in zip(saved.settingEntries, new.settingEntries)
        where before.recordedText != after.recordedText {
            switch before.resume {
            case .refuse(let unless) where before.recordedText != "none" && !(unless.map(allowed.contains) ?? false):
                let remedy = unless.map { "pass \($0) to go on with it" } ?? "a resumed run keeps it"
                throw BatonError(
                    "\(before.flag) \(after.valueText) differs from the run's \(before.valueText); \(remedy)")
            case .free:
                continue
            default:
                notices.append("\(before.key) changed: \(before.recordedText) -> \(after.recordedText)")
            }
        }
        // Recorded values without a flag.
        if saved.epsilon != new.epsilon { notices.append("epsilon changed: \(saved.epsilon) -> \(new.epsilon)") }
        return notices
    }
}
