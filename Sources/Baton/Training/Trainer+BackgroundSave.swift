import Foundation

/// --async-save: a periodic checkpoint is copied to host memory (pinned on a GPU) and written by a
/// background thread (BackgroundSave) while training goes on. Rank 0 writes, as every save; every
/// rank takes the save to be in flight from its step until rank 0 says it ended, at the start of
/// a later step, so all ranks stop together when it failed. A failure follows --on-save-error:
/// the run stops (the earlier checkpoints and `latest` intact), or says so and trains on. The
/// final and stop saves (SIGTERM, SIGINT, --stop-at) wait for the save in flight first, then save
/// as without the flag: the bytes written are the same either way.
extension Trainer {
    /// Rank 0's host copy, made before the first step (as every buffer a run needs), so no
    /// step pays for allocating and first touching it.
    func prepareBackgroundSaves() throws {
        guard options.asyncSave, !optimizer.isSliced, isLeader, snapshot == nil else { return }
        let fresh = try CheckpointSnapshot(device: model.device, count: model.layout.totalCount)
        log(
            "checkpoint: \(String(format: "%.1f", Double(fresh.byteCount) / 1048576)) MiB of host memory for "
                + "background saves (--async-save)")
        snapshot = fresh
    }

    /// Starts the background save of the current state, after the one in flight ends.
    func startBackgroundSave() throws {
        try settleBackgroundSave(waiting: true)
        guard lastSaved?.step != state.step else { return }
        backgroundStep = state.step
        guard isLeader else { return }
        let step = state.step
        let start = monotonicSeconds()
        do {
            try checkSavable()
            try prepareBackgroundSaves()
            try snapshot!.capture(checkpointTensors)
        } catch {
            backgroundSave.fail(step: step, error)
            return
        }
        let copySeconds = monotonicSeconds() - start
        // The thread reads the snapshot and the trainer's constants (config, store, layout), never
        // what the training loop changes: the state is passed as a copy.
        let source = snapshot!, saved = state, trainer = UncheckedSendable(self)
        backgroundSave.start(step: step, copySeconds: copySeconds) { note in
            try trainer.value.write(from: source, state: saved, log: note)
        }
    }

    /// Whether the background save ended, as every rank learns it from rank 0. A success is
    /// logged (and the retention policy applied); a failure stops the run, or with
    /// --on-save-error retry is logged and training goes on. `waiting`: until it ends.
    func settleBackgroundSave(waiting: Bool) throws {
        guard let step = backgroundStep else { return }
        let outcome = isLeader ? (waiting ? backgroundSave.wait() : backgroundSave.poll()) : nil
        // nil: still running; "": saved; else why it failed.
        var verdict: String? = outcome.map {
            switch $0.result {
            case .success: return ""
            case .failure(let error): return "\(error)"
            }
        }
        if let parallel = options.parallel, parallel.size > 1 {
            let message = try parallel.communicator.broadcast(verdict.map { "ended:" + $0 } ?? "running")
            verdict = message.hasPrefix("ended:") ? String(message.dropFirst(6)) : nil
        }
        guard let verdict else { return }
        backgroundStep = nil
        outcome?.notes.forEach(log)
        if verdict.isEmpty {
            if let outcome, case .success(let url) = outcome.result {
                finishSave(step: step, url: url, seconds: outcome.seconds, how: outcome.summary)
                lastSaved = (step, url)
            } else {
                lastSaved = (step, store.url(step: step))
            }
            return
        }
        var error: Error = BatonError("rank 0: \(verdict)")
        if let outcome, case .failure(let failure) = outcome.result { error = failure }
        guard config.onSaveError == .retry, let failure = error as? BatonError else { throw error }
        log(
            "checkpoint: save at step \(step) failed: \(failure.message); training on, retrying at the next save "
                + "(--on-save-error retry)"
        )
    }

    /// Before the run ends with an error: the save in flight is waited for, so a good checkpoint
    /// lands whole (rank 0 alone; no other rank is asked).
    func finishBackgroundSaveBeforeExit() {
        guard isLeader, let outcome = backgroundSave.wait() else { return }
        outcome.notes.forEach(log)
        switch outcome.result {
        case .success(let url):
            finishSave(step: outcome.step, url: url, seconds: outcome.seconds, how: outcome.summary)
            lastSaved = (outcome.step, url)
        case .failure(let error):
            log("checkpoint: the background save of step \(outcome.step) failed too: \(error)")
        }
        backgroundStep = nil
    }
}
