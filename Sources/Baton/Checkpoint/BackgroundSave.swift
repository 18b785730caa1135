import Foundation

/// One checkpoint save at a time on a background thread (--async-save, as torchtitan's
/// `async_mode` and OLMo-core's `save_async`): the trainer copies the step's state to host memory,
/// starts the write here and trains on; it collects the outcome at a later step (`poll`), or waits
/// for it (`wait`) before the next save, a final or stop save, and an exit. The write itself is
/// CheckpointStore.save, atomic as ever: a kill mid-write leaves the earlier checkpoints and
/// `latest` as they were.
final class BackgroundSave: @unchecked Sendable {
    /// How a save ended.
    struct Outcome {
        let step: Int
        let result: Result<URL, Error>
        /// The write's own time, on the background thread.
        let seconds: Double
        /// What the save said while it ran (CheckpointStore's log lines), for the trainer to print.
        let notes: [String]
        /// The copy to host memory's time, on the training thread (the time training stood still).
        let copySeconds: Double

        /// What the "checkpoint: saved" line adds.
        var summary: String {
            " in the background (training paused \(String(format: "%.2f", copySeconds)) s for the copy)"
        }
    }

    private let condition = NSCondition()
    /// The step of the save in flight.
    private var running: Int?
    private var finished: Outcome?
    private var notes: [String] = []

    /// Starts `write` on a new thread; it may call `note` with lines to print. At most one save is
    /// in flight: the caller collects the previous one first.
    func start(
        step: Int, copySeconds: Double,
        _ write: @escaping @Sendable (_ note: @escaping @Sendable (String) -> Void) throws -> URL
    ) {
        condition.lock()
        precondition(running == nil && finished == nil, "a save is already in flight")
        running = step
        notes = []
        condition.unlock()
        let thread = Thread { [self] in
            let start = monotonicSeconds()
            let result = Result<URL, Error> { try write { line in self.note(line) } }
            condition.lock()
            finished = Outcome(
                step: step, result: result, seconds: monotonicSeconds() - start, notes: notes,
                copySeconds: copySeconds)
            running = nil
            condition.broadcast()
            condition.unlock()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Records a save that failed before it could start (its outcome is collected as any other).
    func fail(step: Int, _ error: Error) {
        condition.lock()
        precondition(running == nil && finished == nil, "a save is already in flight")
        finished = Outcome(step: step, result: .failure(error), seconds: 0, notes: [], copySeconds: 0)
        condition.unlock()
    }

    /// The outcome of the save, if it has ended (and not yet been collected).
    func poll() -> Outcome? {
        condition.lock()
        defer { condition.unlock() }
        let outcome = finished
        finished = nil
        return outcome
    }

    /// Waits for the save in flight to end; its outcome, or nil when none was pending.
    func wait() -> Outcome? {
        condition.lock()
        defer { condition.unlock() }
        while running != nil { condition.wait() }
        let outcome = finished
        finished = nil
        return outcome
    }

    private func note(_ line: String) {
        condition.lock()
        notes.append(line)
        condition.unlock()
    }
}

/// A value handed to another thread that the compiler cannot prove safe to share; each use says
/// why it is.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
