import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Fault-injection switches for the test suite, read from the environment. Unset in normal use.
enum TestHooks {
    /// BATON_TEST_PAUSE_IN_SAVE=MARKER (and optionally BATON_TEST_PAUSE_IN_SAVE_STEP=N): in the
    /// middle of writing a checkpoint (model file written, optimizer file not yet), create the
    /// file MARKER and stop there until killed, so a test can SIGKILL a save in flight.
    static func pauseInSaveIfAsked(step: Int) {
        let environment = ProcessInfo.processInfo.environment
        guard let marker = environment["BATON_TEST_PAUSE_IN_SAVE"] else { return }
        if let only = environment["BATON_TEST_PAUSE_IN_SAVE_STEP"], Int(only) != step { return }
        FileManager.default.createFile(atPath: marker, contents: Data("\(getpid())\n".utf8))
        while true { sleep(60) }
    }

    /// BATON_TEST_ENOSPC_AT_STEP=N: the save of step N fails half-way as if the disk were full
    /// (for machines where the test cannot mount a small tmpfs).
    static func diskFull(atStep step: Int) -> Bool {
        ProcessInfo.processInfo.environment["BATON_TEST_ENOSPC_AT_STEP"].flatMap(Int.init) == step
    }

    /// BATON_TEST_NONFINITE_AT_STEP=N: a NaN is put into the gradients of step N.
    static func poisonGradients(atStep step: Int) -> Bool {
        ProcessInfo.processInfo.environment["BATON_TEST_NONFINITE_AT_STEP"].flatMap(Int.init) == step
    }
}
