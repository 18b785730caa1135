import CBatonSystem
import Foundation

/// Per-invocation choices that are not part of the run's config.
public struct RunOptions {
    /// Stop on purpose once this many steps are done, with a save (0: save the initial state).
    public var stopAt: Int?
    /// Replace an existing checkpoint for the same step (only ever after the new one is complete).
    public var overwrite = false
    /// Debug: append every sample index consumed to this JSONL file (one line per micro-batch).
    public var sampleLedger: URL?
    /// Resume even when the data's fingerprint differs from the checkpoint's.
    public var allowDataChange = false
    /// Resume with another --global-batch than the run's.
    public var allowBatchChange = false
    /// Periodic checkpoints are written by a background thread from a host copy (BackgroundSave).
    public var asyncSave = false
    /// Faults a test injects (none in normal use).
    public var faults = FaultPlan()
    /// The job's ranks, when a launcher started several (rank 0 writes; every rank trains).
    public var parallel: DataParallel?

    public init(stopAt: Int? = nil, overwrite: Bool = false, sampleLedger: URL? = nil, allowDataChange: Bool = false) {
        self.stopAt = stopAt
        self.overwrite = overwrite
        self.sampleLedger = sampleLedger
        self.allowDataChange = allowDataChange
    }
}

/// What a finished or stopped run reports.
public struct TrainingSummary {
    public let step: Int
    public let totalSteps: Int
    public let finalLoss: Float?
    public let finalValidationLoss: Float?
    public let tokensPerSecond: Double
    public let runFolder: URL
    public let checkpoint: URL?
    /// Why the run stopped before `totalSteps`: "SIGINT", "SIGTERM", "SIGUSR1" or "--stop-at"; nil when done.
    public let stoppedBy: String?
}

/// The training loop, in one place: batches at the state's position -> one optimizer step
/// (TrainingStep) -> metrics, validation every `evalEvery` steps, checkpoints every `saveEvery`
/// steps, at the end, at `--stop-at`, and on SIGINT, SIGTERM or SIGUSR1 (after the step in flight; mpirun
/// forwards SIGUSR1 to every rank).
/// Opening a run (its folder, lock, config record, resume) is RunOpener's job; a Trainer starts
/// from what that hands it and touches the run folder only to log metrics and save checkpoints.
public final class Trainer {
    public let config: TrainingConfig
    public let model: GPT
    public let optimizer: AdamW
    /// The step function with its buffers (the step's losses, gradient accumulation's sums).
    let optimizerStep: TrainingStep
    public let schedule: LearningRateSchedule
    public let loader: DataLoader
    public let validationSet: TokenDataset?
    /// --hellaswag: scored beside validation (nil without the flag).
    public let hellaswag: HellaSwagDuringTraining?
    public let fingerprint: DataFingerprint
    /// Each shard's token CRC, for ranks to compare (not recorded in checkpoints).
    public let dataContentDigest: [UInt32]
    public let runFolder: RunFolder
    public let store: CheckpointStore
    public let options: RunOptions
    /// What this run computes on, recorded in each checkpoint.
    public let hardware: HardwareRecord
    /// All resumable state; the only copy.
    public private(set) var state: TrainingState
    /// Micro-batches per optimizer step over all ranks, and this rank's share of them.
    public let globalMicroBatches: Int
    public var rank: Int { options.parallel?.rank ?? 0 }
    public var worldSize: Int { options.parallel?.size ?? 1 }
    /// Rank 0 writes the metrics, the checkpoints and the progress lines.
    public var isLeader: Bool { rank == 0 }
    /// The checkpoint this run was resumed from (its step needs no new save).
    public let restoredFrom: URL?
    /// A previous run's checkpoints moved aside by a fresh start with --overwrite; deleted once
    /// this run's first checkpoint is in place.
    var replacedCheckpoints: URL?
    /// This process's hold on the run folder (see RunLock).
    var lock: RunLock?
    /// The newest checkpoint of this run's state: the one resumed from, then each one saved.
    var lastSaved: (step: Int, url: URL)?
    /// --async-save (Trainer+BackgroundSave.swift): the host copy background saves write from
    /// (made at the first), the save in flight on rank 0, and the step every rank takes it to be at.
    var snapshot: CheckpointSnapshot?
    let backgroundSave = BackgroundSave()
    var backgroundStep: Int?
    /// ZeRO-1 with ranks: the save in progress, in which every rank writes its moments' slice.
    var slicedMomentWrite: SlicedMomentWrite?
    let log: (String) -> Void

    /// Builds the model and optimizer on `device`: initialised from the seed, or, with
    /// `restoring`, holding a verified checkpoint's weights, moments and training state.
    public init(
        config: TrainingConfig, data: TrainingData, device: Device, runFolder: RunFolder,
        restoring: VerifiedCheckpoint? = nil, options: RunOptions = RunOptions(), log: @escaping (String) -> Void
    ) throws {
        try config.validate()
        self.config = config
        self.runFolder = runFolder
        self.options = options
        self.log = log
        store = CheckpointStore(runFolder: runFolder.url)
        loader = DataLoader(dataset: data.train, batchSize: config.batchSize, seed: config.seed)
        validationSet = data.validation
        hellaswag = try HellaSwagDuringTraining(
            config: config, rank: options.parallel?.rank ?? 0, worldSize: options.parallel?.size ?? 1,
            communicator: options.parallel?.communicator)
        fingerprint = data.fingerprint
        dataContentDigest = data.contentDigest
        try device.setPrecision(config.resolvedPrecision)
        hardware = device.hardware
        // The run's config says how its ranks sum gradients, whatever the command line of a resume.
        options.parallel?.exact = config.reduce != .fast
        model = try GPT(config: config.model, device: device)
        model.recompute = config.recompute ?? .off
        optimizer = try AdamW(
            model: model, beta1: config.beta1, beta2: config.beta2, epsilon: config.epsilon,
            weightDecay: config.weightDecay, slice: Trainer.zeroSlice(config: config, model: model, options: options))
        optimizerStep = TrainingStep(model: model, optimizer: optimizer, parallel: options.parallel)
        schedule = LearningRateSchedule(
            maximum: config.learningRate, minimum: config.minLearningRate,
            warmupSteps: config.warmupSteps, totalSteps: config.steps, shape: config.schedule ?? .cosine,
            decayFraction: config.decayFraction ?? 0.2)
        let world = options.parallel?.size ?? 1
        let global = config.globalBatch ?? config.batchSize * config.gradientAccumulation * world
        guard global % (config.batchSize * world) == 0 else {
            throw BatonError.invalidFlag(
                flag: "--global-batch",
                message:
                    "--global-batch \(global) is not a multiple of --batch \(config.batchSize) x \(world) "
                    + "rank\(world == 1 ? "" : "s") (\(config.batchSize * world))"
            )
        }
        globalMicroBatches = global / config.batchSize
        restoredFrom = restoring?.url
        if let restoring {
            state = restoring.state.trainingState
            try CheckpointStore.loadTensors(from: restoring.url, layout: model.layout, into: checkpointTensors)
        } else {
            state = TrainingState()
            try model.initializeParameters(seed: config.seed)
        }
        state.position = loader.normalized(state.position)
    }

    /// One optimizer step over `gradientAccumulation` micro-batches, read from the state's
    /// position. A non-finite loss or gradient norm is never applied: it stops the run (an error,
    /// nothing of the step kept) or, with --on-nonfinite skip, the update is skipped and counted.
    public func trainStep() throws -> StepOutcome {
        let stepNumber = state.step + 1
        // The step's micro-batches are the next ones of the epoch's order whatever the world
        // size; this rank reads its contiguous share of them.
        let share = globalMicroBatches / worldSize
        var batches: [Batch] = []
        var ledgerLines: [String] = []
        var position = state.position
        for index in 0..<globalMicroBatches {
            if index / share == rank { batches.append(try loader.batch(at: position)) }
            if options.sampleLedger != nil {
                let (start, samples) = loader.sampleIndices(at: position)
                ledgerLines.append(
                    "{\"step\":\(stepNumber),\"epoch\":\(start.epoch),\"index\":\(start.index),\"samples\":\(samples)}")
            }
            position = loader.position(after: position)
        }
        var spike: SpikeVerdict?
        let outcome = try optimizerStep.run(
            microBatches: batches.map { batch in
                var targets = batch.targets
                options.faults.alterTargets?(stepNumber, &targets, config.model.vocabularySize)
                return (batch.inputs, targets)
            }, B: config.batchSize,
            T: config.model.contextLength, learningRate: schedule.learningRate(atStep: state.step),
            gradientClip: config.gradientClip,
            updateNumber: state.nextUpdateNumber, lossMasked: loader.dataset.hasLossMask,
            afterBackward: options.faults.afterBackward.map { hook in { try hook(stepNumber, $0) } },
            shouldApply: { loss, gradientNorm in
                spike = SpikeVerdict(
                    loss: loss, gradientNorm: gradientNorm, lossWindow: state.lossWindow,
                    gradientWindow: state.gradientNormWindow, lossLimit: config.skipLossZ,
                    gradientLimit: config.skipGradientZ)
                return spike?.reason == nil
            })
        if let reason = spike?.reason, !outcome.applied {
            state.skippedUpdates += 1
            log("step \(stepNumber): \(reason); update skipped (\(state.skippedUpdates) so far)")
        } else if !outcome.applied {
            let what =
                !outcome.loss.isFinite ? "the loss is \(outcome.loss)" : "the gradient norm is \(outcome.gradientNorm)"
            guard config.onNonfinite == .skip else {
                finishBackgroundSaveBeforeExit()
                let kept =
                    store.steps().last.map { "; the last checkpoint (\(CheckpointStore.name(step: $0))) is kept" } ?? ""
                throw BatonError(
                    "step \(stepNumber): \(what); stopped without applying it\(kept). Resume with a lower --lr, or "
                        + "--on-nonfinite skip"
                )
            }
            state.skippedUpdates += 1
            log("step \(stepNumber): \(what); update skipped (--on-nonfinite skip; \(state.skippedUpdates) so far)")
        }
        // A fine-tuning step with nothing to train on (loss and norm 0 by definition) says
        // nothing about spikes: it is left out of the windows.
        if outcome.countedTargets != 0 {
            state.lossWindow.push(outcome.loss)
            state.gradientNormWindow.push(outcome.gradientNorm)
        }
        state.step = stepNumber
        state.position = position
        state.tokensSeen += config.tokensPerStep
        state.lastLoss = outcome.loss
        if let ledger = options.sampleLedger, isLeader { try appendLines(ledgerLines, to: ledger) }
        return outcome
    }

    public func validationLoss() throws -> Float? {
        guard let validationSet else { return nil }
        return try Evaluation.meanLoss(
            model: model, dataset: validationSet, batchSize: config.batchSize, batches: config.evalBatches)
    }

    var checkpointTensors: CheckpointTensors {
        CheckpointTensors(
            device: model.device, parameters: model.parameters, firstMoment: optimizer.firstMoment,
            secondMoment: optimizer.secondMoment, momentsStart: optimizer.slice.lowerBound)
    }

    /// Writes a checkpoint of the current state (atomic; see CheckpointStore.save) and applies
    /// the retention policy.
    @discardableResult
    public func saveCheckpoint() throws -> URL {
        try checkSavable()
        let start = monotonicSeconds()
        let url = try write(from: checkpointTensors, state: state, log: log)
        finishSave(step: state.step, url: url, seconds: monotonicSeconds() - start)
        return url
    }

    /// A checkpoint with a non-finite number in it is never written. (With ZeRO-1 the moments
    /// are this rank's slice; each rank checks its own as it writes it.)
    func checkSavable() throws {
        for (name, tensor) in [
            ("weights", model.parameters), ("AdamW moments", optimizer.firstMoment),
            ("AdamW moments", optimizer.secondMoment),
        ]
        where !(try model.device.globalNormSquared(tensor)).isFinite {
            throw BatonError(
                "step \(state.step): the \(name) are not finite; no checkpoint written (the earlier ones are kept)")
        }
    }

    /// Writes the checkpoint of `state` from `source` (the device's tensors, or a host copy of
    /// them). Reads only what does not change as the run trains, so a background thread may call it.
    func write(from source: some CheckpointSource, state: TrainingState, log: (String) -> Void) throws -> URL {
        let backend = model.device.kind.rawValue, hardware = self.hardware
        return try store.save(
            step: state.step, tensors: source, layout: model.layout,
            describe: { files in
                CheckpointState(
                    state: state, config: self.config, data: self.fingerprint, backend: backend,
                    hardware: hardware, worldSize: self.worldSize, files: files)
            }, overwrite: options.overwrite, midSave: options.faults.midSave,
            writeOptimizer: slicedMomentWrite.map { $0.lead }, log: log)
    }

    /// Once a checkpoint is in place: the retention policy, the line that says so, and a previous
    /// run's checkpoints (moved aside by --overwrite) deleted.
    func finishSave(step: Int, url: URL, seconds: Double, how: String = "") {
        let removed = store.applyRetention(keepLast: config.keepLast, keepEvery: config.keepEvery, protected: step)
        var line = "checkpoint: saved \(url.path) in \(String(format: "%.2f", seconds)) s\(how)"
        if !removed.isEmpty {
            line +=
                "; removed \(removed.map { CheckpointStore.name(step: $0) }.joined(separator: ", ")) (--keep-last "
                + "\(config.keepLast))"
        }
        log(line)
        if let replaced = replacedCheckpoints {
            try? FileManager.default.removeItem(at: replaced)
            log(
                "checkpoint: deleted the previous run's checkpoints (\(replaced.lastPathComponent)) now that this "
                    + "run has one"
            )
            replacedCheckpoints = nil
        }
    }

    public func run() throws -> TrainingSummary {
        do { return try trainUntilDone() } catch {
            finishBackgroundSaveBeforeExit()
            throw error
        }
    }

    private func trainUntilDone() throws -> TrainingSummary {
        baton_install_stop_handlers()
        let metrics = isLeader ? try MetricsLog(url: runFolder.metricsURL) : nil
        log("model: \(config.model.summary): \(model.parameterCount) parameters")
        log(model.activationSummary(B: config.batchSize, T: config.model.contextLength))
        if config.resolvedPrecision != .fp32 { log("precision: \(config.resolvedPrecision.summary)") }
        log("data: \(loader.dataset.sampleCount) training sequences, \(loader.batchesPerEpoch) batches per epoch")
        if let parallel = options.parallel {
            log(
                "ranks: \(parallel.size), \(globalMicroBatches / parallel.size) "
                    + "micro-batch\(globalMicroBatches / parallel.size == 1 ? "" : "es") of \(config.batchSize) each "
                    + "per step (global batch \(globalMicroBatches * config.batchSize)), gradients summed "
                    + "\(parallel.summary)"
            )
        }
        if config.zero == 1 { log(zeroSummary) }
        if options.asyncSave && optimizer.isSliced {
            // Each rank writes its slice of the moments within the save, over the communicator,
            // which a background thread may not use (MPI is opened for the main thread only).
            log("checkpoint: --async-save with --zero 1 over \(worldSize) ranks: saves stay synchronous")
        }
        try prepareBackgroundSaves()
        log("run folder: \(runFolder.url.path)")
        let guarded = (config.skipLossZ ?? 0) > 0 || (config.skipGradientZ ?? 0) > 0
        let held = min(state.lossWindow.values.count, state.gradientNormWindow.values.count)
        if guarded && state.step >= SpikeWindow.length && held < SpikeWindow.length {
            // A checkpoint from before the guards, whose state has no windows.
            log(
                "spike guards: the window holds \(held) of \(SpikeWindow.length) steps (a checkpoint without one); "
                    + "nothing is skipped until it is full")
        }
        var lastValidation: Float?
        lastSaved = restoredFrom.map { (state.step, $0) }
        if state.step >= config.steps {
            log("already at step \(state.step) of \(config.steps): nothing to train (raise --steps to extend the run)")
        }
        var smoothedStepSeconds: Double?
        var totalSeconds = 0.0, stepsRun = 0
        func summary(stoppedBy: String?) -> TrainingSummary {
            TrainingSummary(
                step: state.step, totalSteps: config.steps, finalLoss: state.lastLoss,
                finalValidationLoss: lastValidation,
                tokensPerSecond: stepsRun > 0 ? Double(config.tokensPerStep * stepsRun) / totalSeconds : 0,
                runFolder: runFolder.url, checkpoint: lastSaved?.url, stoppedBy: stoppedBy)
        }
        /// A final or stop save: after the background save in flight, unless it saved this step.
        func saveUnlessSaved() throws {
            try settleBackgroundSave(waiting: true)
            if lastSaved?.step != state.step { lastSaved = (state.step, try saveTogether()) }
        }
        /// A periodic save that fails: stop (default), or with --on-save-error retry, say so and
        /// keep training; the next save tries again. Final and stop saves always stop on failure.
        func saveOrRetryLater() throws {
            do { try saveUnlessSaved() } catch let error as BatonError where config.onSaveError == .retry {
                log(
                    "checkpoint: save at step \(state.step) failed: \(error.message); training on, retrying at the "
                        + "next save (--on-save-error retry)"
                )
            }
        }
        while true {
            try settleBackgroundSave(waiting: false)
            if let stopAt = options.stopAt, state.step >= stopAt {
                try saveUnlessSaved()
                return summary(stoppedBy: "--stop-at")
            }
            let signal = try agreedStopSignal()
            if signal != 0 {
                try saveUnlessSaved()
                return summary(stoppedBy: signal == SIGINT ? "SIGINT" : signal == SIGUSR1 ? "SIGUSR1" : "SIGTERM")
            }
            if state.step >= config.steps { break }
            let stepIndex = state.step
            let start = monotonicSeconds()
            let outcome = try trainStep()
            let seconds = monotonicSeconds() - start
            totalSeconds += seconds
            stepsRun += 1
            smoothedStepSeconds = smoothedStepSeconds.map { 0.9 * $0 + 0.1 * seconds } ?? seconds
            let tokensPerSecond = Double(config.tokensPerStep) / seconds
            var record = StepMetrics(
                step: state.step, epoch: state.position.epoch, loss: outcome.loss,
                lr: schedule.learningRate(atStep: stepIndex), gradNorm: outcome.gradientNorm,
                tokensPerSecond: tokensPerSecond,
                skipped: outcome.applied ? nil : true)
            let isLast = state.step == config.steps
            if (config.evalEvery > 0 && state.step % config.evalEvery == 0) || isLast {
                record.valLoss = try validationLoss()
                lastValidation = record.valLoss ?? lastValidation
            }
            if let hellaswag, hellaswag.isDue(step: state.step, isLast: isLast) {
                let line = try hellaswag.evaluate(model: model, into: &record)
                log("step \(state.step): \(line)")
            }
            try metrics?.append(record)
            if state.step == 1 || state.step % config.logEvery == 0 || isLast || record.valLoss != nil {
                let eta = Double(config.steps - state.step) * (smoothedStepSeconds ?? 0)
                var line =
                    "step \(state.step)/\(config.steps) | loss \(fixed(outcome.loss, 4)) | lr "
                    + "\(scientific(record.lr)) | grad norm \(fixed(outcome.gradientNorm, 3)) | "
                    + "\(Int(tokensPerSecond)) tok/s | ETA \(formatDuration(eta))"
                if let val = record.valLoss { line += " | val loss \(fixed(val, 4))" }
                log(line)
            }
            if config.saveEvery > 0 && state.step % config.saveEvery == 0 {
                if options.asyncSave && !optimizer.isSliced {
                    try startBackgroundSave()
                } else {
                    try saveOrRetryLater()
                }
            }
        }
        try saveUnlessSaved()
        return summary(stoppedBy: nil)
    }

    /// Rank 0 saves; every rank learns how it went and goes on, or stops, with it.
    private func saveTogether() throws -> URL {
        guard let parallel = options.parallel, parallel.size > 1 else { return try saveCheckpoint() }
        var failure: Error?
        var url = store.url(step: state.step)
        slicedMomentWrite = makeSlicedMomentWrite()
        defer { slicedMomentWrite = nil }
        if isLeader {
            do { url = try saveCheckpoint() } catch { failure = error }
            try slicedMomentWrite?.releaseIfUnreached()
        } else {
            do { try slicedMomentWrite?.follow() } catch { failure = error }
        }
        let message = try parallel.communicator.broadcast(failure.map { "\($0)" } ?? "")
        if let failure { throw failure }
        if !message.isEmpty { throw BatonError("rank 0: \(message)") }
        return url
    }

    /// The stop signal any rank received (SIGINT, SIGTERM or SIGUSR1), so that every rank stops after the same step.
    private func agreedStopSignal() throws -> Int32 {
        let local = baton_stop_signal()
        guard let parallel = options.parallel, parallel.size > 1 else { return local }
        return try parallel.communicator.allgather([local]).max() ?? local
    }

    private func appendLines(_ lines: [String], to url: URL) throws {
        if !FileManager.default.fileExists(atPath: url.path) {
            FileManager.default.createFile(atPath: url.path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: url.path) else {
            throw BatonError("\(url.path): cannot open sample ledger")
        }
        defer { try? handle.close() }
        handle.seekToEndOfFile()
        try handle.write(contentsOf: Data(lines.map { $0 + "\n" }.joined().utf8))
    }
}

func fixed(_ value: Float, _ digits: Int) -> String { String(format: "%.\(digits)f", Double(value)) }
func scientific(_ value: Float) -> String { String(format: "%.2e", Double(value)) }
