import Baton
import Foundation

// Debug builds only: `baton train --inject-fault KIND:STEP[:MARKER]` hands the run a FaultPlan,
// so the tests can inject faults into a separate `baton` process. Release builds have no such flag.
#if DEBUG
let debugTrainOptions = [
    Option(
        name: "--inject-fault", placeholder: "KIND:STEP[:FILE]",
        help:
            "debug builds, for tests: pause-in-save:STEP:FILE (create FILE, then wait to be killed), "
            + "slow-save:STEP:FILE, disk-full:STEP, nonfinite:STEP, grad-spike:STEP, garbage-batch:STEP"
    )
]

func faultPlan(_ text: String) throws -> FaultPlan {
    let parts = text.split(separator: ":", maxSplits: 2).map(String.init)
    guard parts.count >= 2, let step = Int(parts[1]) else {
        throw UsageError("baton train: --inject-fault expects KIND:STEP[:FILE], got '\(text)'")
    }
    switch (parts[0], parts.count) {
    case ("pause-in-save", 3):
        let marker = parts[2]
        return FaultPlan(midSave: { saving, _ in
            guard saving == step else { return }
            _ = FileManager.default.createFile(atPath: marker, contents: Data("\(getpid())\n".utf8))
            while true { sleep(60) }
        })
    case ("slow-save", 3):
        // A save whose write takes 2 s more (a slow disk): create FILE, sleep, then go on.
        let marker = parts[2]
        return FaultPlan(midSave: { saving, _ in
            guard saving == step else { return }
            _ = FileManager.default.createFile(atPath: marker, contents: Data("\(getpid())\n".utf8))
            sleep(2)
        })
    case ("disk-full", 2):
        // The error a real full disk gives while the optimizer file is written.
        return FaultPlan(midSave: { saving, folder in
            guard saving == step else { return }
            throw BatonError.fileWriteFailed(
                path: folder.appendingPathComponent(CheckpointStore.optimizerFile).path, what: "write failed",
                code: ENOSPC, neededBytes: 0)
        })
    case ("nonfinite", 2):
        return FaultPlan(afterBackward: { current, model in
            if current == step { try model.device.fill(model.gradients.slice(0, 1), with: .nan) }
        })
    case ("grad-spike", 2):
        // The step's gradients times 1000 (a gradient spike; the loss stays as it was).
        return FaultPlan(afterBackward: { current, model in
            guard current == step else { return }
            let spiked = try model.device.download(model.gradients).map { $0 * 1000 }
            try model.device.upload(spiked, to: model.gradients)
        })
    case ("garbage-batch", 2):
        // Every target of the step the vocabulary's last token, one the data never has (a loss spike).
        var plan = FaultPlan()
        plan.alterTargets = { current, targets, vocabularySize in
            if current == step { targets = [Int32](repeating: Int32(vocabularySize - 1), count: targets.count) }
        }
        return plan
    case ("stall-rank", 3):
        // A rank that stops answering (a hung GPU, a stopped process) but does not exit: the
        // others must not wait for it forever.
        guard let rank = Int(parts[2]) else {
            throw UsageError("baton train: --inject-fault stall-rank:STEP:RANK expects a rank number")
        }
        return FaultPlan(afterBackward: { current, _ in
            guard current == step, ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"].flatMap(Int.init) == rank
            else { return }
            while true { sleep(60) }
        })
    default:
        throw UsageError(
            "baton train: --inject-fault: unknown fault '\(text)' (pause-in-save:STEP:FILE, slow-save:STEP:FILE, "
                + "disk-full:STEP, nonfinite:STEP, grad-spike:STEP, garbage-batch:STEP, stall-rank:STEP:RANK)"
        )
    }
}

let debugExportOptions = [
    Option(
        name: "--inject-fault", placeholder: "pause-at:POINT:FILE",
        help:
            "debug builds, for tests: at POINT (written, swapped, aside: the path without RENAME_EXCHANGE) create "
            + "FILE, then wait to be killed"
    )
]

func exportFaultHooks(_ text: String) throws -> ExportFolder.Hooks {
    let parts = text.split(separator: ":", maxSplits: 2).map(String.init)
    guard parts.count == 3, parts[0] == "pause-at", ["written", "swapped", "aside"].contains(parts[1]) else {
        throw UsageError(
            "baton export: --inject-fault expects pause-at:POINT:FILE (POINT: written, swapped or aside), got '\(text)'"
        )
    }
    var hooks = ExportFolder.Hooks()
    hooks.withoutExchange = parts[1] == "aside"
    let (point, marker) = (parts[1], parts[2])
    hooks.pause = { reached in
        guard reached == point else { return }
        _ = FileManager.default.createFile(atPath: marker, contents: Data("\(getpid())\n".utf8))
        while true { sleep(60) }
    }
    return hooks
}
#else
let debugTrainOptions: [Option] = []
let debugExportOptions: [Option] = []
#endif
