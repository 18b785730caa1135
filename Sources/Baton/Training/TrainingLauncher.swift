import Foundation

/// Starts a run: fresh, or resumed from a checkpoint, with the checks that keep a run folder
/// from being trained over by accident.
public enum TrainingLauncher {
    public struct Request {
        /// `--out`, or nil for a new folder under runs/.
        public var out: String?
        /// Applies the flags given on the command line to a config (the defaults for a fresh run,
        /// the checkpoint's config for a resumed one).
        public var applyFlags: (inout TrainingConfig) throws -> Void
        public var resume: ResumeRequest?
        public var options: RunOptions

        public init(out: String?, resume: ResumeRequest?, options: RunOptions, applyFlags: @escaping (inout TrainingConfig) throws -> Void) {
            self.out = out
            self.resume = resume
            self.options = options
            self.applyFlags = applyFlags
        }
    }

    public static func start(_ request: Request, device: Device, log: @escaping (String) -> Void) throws -> Trainer {
        if request.resume != nil && request.out == nil {
            throw BatonError("--resume needs --out RUN, the run folder to continue")
        }
        let runFolder = try RunFolder.locate(requested: request.out)
        let existed = FileManager.default.fileExists(atPath: runFolder.url.path)
        // Everything below may change the folder: take it for this process alone first.
        let lock = try RunLock(runFolder: runFolder.url)
        do {
            let trainer = try start(request, runFolder: runFolder, device: device, log: log)
            trainer.lock = lock
            return trainer
        } catch {
            // Leave no empty folder behind when a fresh start fails its checks.
            if !existed { try? FileManager.default.removeItem(at: lock.url); try? FileManager.default.removeItem(at: runFolder.url) }
            throw error
        }
    }

    private static func start(_ request: Request, runFolder: RunFolder, device: Device, log: @escaping (String) -> Void) throws -> Trainer {
        let store = CheckpointStore(runFolder: runFolder.url)
        store.removeAbandonedSaves(log: log)
        if let resume = request.resume {
            if let found = try store.resolve(resume, log: log) {
                return try resumed(from: found, request: request, runFolder: runFolder, device: device, log: log)
            }
            log("checkpoint: none in \(store.folder.path); starting fresh")
        } else if runFolder.holdsRun || !store.steps().isEmpty {
            guard request.options.overwrite else {
                let have = store.steps().map { CheckpointStore.name(step: $0) }
                throw BatonError("--out \(runFolder.url.path) already holds a run\(have.isEmpty ? "" : " (checkpoints \(have.joined(separator: ", ")))"); pass --resume auto to continue it, or --overwrite to start over")
            }
        }
        // A --resume that finds no checkpoint restarts the run with the config it was started
        // with (its config.json), not the defaults.
        var config = request.resume != nil ? (runFolder.readConfig() ?? TrainingConfig()) : TrainingConfig()
        try request.applyFlags(&config)
        // Record where the data is absolutely, so a resume from another directory finds it.
        config.dataFolder = URL(fileURLWithPath: config.dataFolder).standardizedFileURL.path
        let replaced = try setAsidePreviousRun(runFolder: runFolder, store: store, log: log)
        let trainer = try Trainer(config: try resolveEpochs(config, log: log), device: device, runFolder: runFolder,
                                  options: request.options, log: log)
        trainer.replacedCheckpoints = replaced
        return trainer
    }

    private static func resumed(from found: (url: URL, state: CheckpointState), request: Request, runFolder: RunFolder,
                                device: Device, log: @escaping (String) -> Void) throws -> Trainer {
        let saved = found.state.config
        var config = saved
        try request.applyFlags(&config)
        if config.model != saved.model {
            throw BatonError("the model shape given (\(describe(config.model))) differs from checkpoint \(found.url.lastPathComponent)'s (\(describe(saved.model))); a resumed run keeps its shape")
        }
        // The checkpoint's config sizes the model about to be allocated: it must agree with the
        // checkpoint's own (size-checked) model file before anything is allocated.
        let expectedBytes = ParameterLayout(config: config.model).totalCount * 4
        let modelBytes = found.state.files[CheckpointStore.modelFile]?.bytes ?? 0
        guard expectedBytes <= modelBytes else {
            throw BatonError("\(found.url.path): state.json describes a model of \(expectedBytes) bytes, but model.safetensors holds \(modelBytes)")
        }
        config = try resolveEpochs(config, log: log)
        for change in differences(saved, config) { log("resume: \(change)") }
        // Checkpoints newer than an explicitly chosen one belong to a future this run is about to
        // rewrite: auto-resume after a crash must not jump back into it. (Auto-resume only passes
        // over newer checkpoints that are corrupt; saving replaces those.)
        let store = CheckpointStore(runFolder: runFolder.url)
        let newer = request.resume == .auto ? [] : store.steps().filter { $0 > found.state.step }
        if !newer.isEmpty {
            let names = newer.map { CheckpointStore.name(step: $0) }.joined(separator: ", ")
            guard request.options.overwrite else {
                throw BatonError("--resume: \(runFolder.url.path) has checkpoints after \(found.url.lastPathComponent) (\(names)); resuming from it would fork the run: pass --overwrite to delete them")
            }
            for step in newer { store.delete(step: step) }
            log("checkpoint: deleted \(names), newer than \(found.url.lastPathComponent) (--overwrite)")
        }
        log("resume: from \(found.url.path) (step \(found.state.step), epoch \(found.state.epoch), index \(found.state.index_in_epoch) in the epoch)")
        return try Trainer(config: config, device: device, runFolder: runFolder, restoring: (found.state, found.url),
                           options: request.options, log: log)
    }

    /// With --epochs, the total steps follow from the data: epochs x batches per epoch / accumulation.
    private static func resolveEpochs(_ config: TrainingConfig, log: (String) -> Void) throws -> TrainingConfig {
        guard let epochs = config.epochs else { return config }
        var resolved = config
        let data = try TrainingData.open(config: config, log: { _ in })
        let batches = data.train.sampleCount / config.batchSize
        resolved.steps = max(1, epochs * batches / config.gradientAccumulation)
        return resolved
    }

    /// A fresh start with --overwrite moves the old checkpoints aside (deleted once the new run
    /// has its own first checkpoint) and clears the old metrics.
    private static func setAsidePreviousRun(runFolder: RunFolder, store: CheckpointStore, log: (String) -> Void) throws -> URL? {
        try? FileManager.default.removeItem(at: runFolder.metricsURL)
        guard FileManager.default.fileExists(atPath: store.folder.path) else { return nil }
        let aside = runFolder.url.appendingPathComponent("checkpoints-replaced-\(Int(Date().timeIntervalSince1970))")
        do { try FileManager.default.moveItem(at: store.folder, to: aside) } catch {
            throw BatonError("\(store.folder.path): cannot move the previous run's checkpoints aside (\(error.localizedDescription))")
        }
        log("checkpoint: --overwrite: moved the previous run's checkpoints to \(aside.path) until this run saves its first")
        return aside
    }

    static func describe(_ model: GPTConfig) -> String {
        "\(model.layers) layers, \(model.heads) heads, \(model.channels) channels, context \(model.contextLength), vocabulary \(model.vocabularySize)"
    }

    /// "lr: 0.001 -> 0.0005" for every top-level config field that changed.
    static func differences(_ old: TrainingConfig, _ new: TrainingConfig) -> [String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let a = try? JSONSerialization.jsonObject(with: encoder.encode(old)) as? [String: Any],
              let b = try? JSONSerialization.jsonObject(with: encoder.encode(new)) as? [String: Any] else { return [] }
        return Set(a.keys).union(b.keys).sorted().compactMap { key in
            let before = a[key].map { "\($0)" } ?? "none", after = b[key].map { "\($0)" } ?? "none"
            return before == after ? nil : "\(key) changed: \(before) -> \(after)"
        }
    }
}
