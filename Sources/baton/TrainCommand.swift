import Baton
import CBatonSystem
import Foundation

let trainSpec = CommandSpec(
    name: "train",
    summary: "Train a GPT-2 or Llama-family model. With no flags: the default small model on the bundled corpus.",
    usage: "baton train [options]        (continue a run: baton train --out RUN --resume auto)",
    options: settingOptions(
        TrainingConfig.settings,
        inserting: [
            "--data": options(
                """
                --out DIR: run folder (default: a new folder under runs/)
                --config FILE: the run's settings from a JSON file with config.json's keys (a run's config.json
                    repeats that run); flags override it
                """),
            "--reduce": options(
                """
                --allow-batch-change: resume with another --global-batch, from the same sample position
                """),
            "--precision": options(
                """
                --comm auto|mpi|nccl: how GPU ranks exchange gradients: NCCL on GPU memory, or MPI through host
                    memory (auto: NCCL where it loads); nccl without mpirun: one rank
                --collective-timeout S: a collective that waits longer than S seconds on a rank ends the job, naming
                    that rank (default 600; 0: wait forever)
                """) + [presetOption],
            "--keep-every": options(
                """
                --stop-at STEP: stop after STEP steps, with a checkpoint (0: save the initial state)
                --init-from HF_DIR|RUN: start from a Hugging Face folder (config.json + safetensors): GPT-2, or the
                    Llama family (model_type llama, qwen2, mistral), or from a Baton run's newest good checkpoint or a
                    checkpoint folder (weights only: a fresh optimizer at step 0); its shape is the run's (a Llama
                    may take a shorter --seq-len)
                --resume auto|step-N|PATH: continue from the newest good checkpoint, a step, or a checkpoint folder
                --overwrite: start over in a run folder that has checkpoints; replace a checkpoint of the same step
                --allow-data-change: resume even though the data differs from the checkpoint's
                """),
            "--on-save-error": options(
                """
                --async-save: copy each periodic checkpoint to host memory and write it on a background thread while
                    training goes on (one save at a time; the final and stop saves wait for it)
                --sample-ledger FILE: debug: record every sample index consumed (JSONL)
                """),
        ]) + deviceOptions + debugTrainOptions)

/// The settings given for this run: a --config file's, then a --model preset's, with the flags over them.
func trainOverrides(_ parsed: ParsedArguments) throws -> TrainingConfig.Overrides {
    var flags = try settingFlags(parsed, TrainingConfig.settings)
    if let preset = try presetOverrides(parsed) { flags = preset.overridden(by: flags) }
    guard let file = parsed.string("--config") else { return flags }
    return try TrainingConfig.Overrides.file(URL(fileURLWithPath: file)).overridden(by: flags)
}

func trainCommand(_ arguments: [String]) throws {
    guard let parsed = try trainSpec.parse(arguments) else { return }
    let resume = parsed.string("--resume").map(ResumeRequest.init)
    var overrides = try trainOverrides(parsed)
    // --init-from names the start itself: a --config file's recorded one gives way.
    if parsed.string("--init-from") != nil { overrides.initFrom = nil }
    // A --config file recorded from a run that started from a Hugging Face folder starts from it too.
    let initFrom =
        parsed.string("--init-from").map { URL(fileURLWithPath: $0) }
        ?? (resume == nil ? overrides.initFrom.map { URL(fileURLWithPath: $0.folder) } : nil)
    // Check the flags before any work, so a typo fails in an instant.
    if resume == nil && initFrom == nil { try TrainingConfig().applying(overrides).validate() }
    // The data named by --data or by a --config file; else the default, which must be here.
    if resume == nil, !overrides.given("dataFolder"),
        !FileManager.default.fileExists(atPath: TrainingConfig().dataFolder)
    {
        throw BatonError(
            "--data: the default data set \(TrainingConfig().dataFolder) is not here; run from the repository root "
                + "or pass --data DIR"
        )
    }
    let stopAt = try parsed.int("--stop-at")
    if let stopAt, stopAt < 0 { throw UsageError("baton train: --stop-at must not be negative") }
    var options = RunOptions(
        stopAt: stopAt, overwrite: parsed.flag("--overwrite"), allowDataChange: parsed.flag("--allow-data-change"))
    options.sampleLedger = parsed.string("--sample-ledger").map { URL(fileURLWithPath: $0) }
    options.allowBatchChange = parsed.flag("--allow-batch-change")
    options.asyncSave = parsed.flag("--async-save")
    // Under mpirun: one rank of a data-parallel job. Rank 0 alone prints.
    // MPI is finalized only after a run that went well: a rank that fails exits at once, and
    // mpirun then ends the others (finalizing would wait for them).
    let parallelism = try ParallelRequest(parsed)
    let communicator = try parallelism.joinCommunicator()
    let leader = (communicator?.rank ?? 0) == 0
    let report: (String) -> Void = leader ? { say($0) } : { _ in }
    #if DEBUG
    if let fault = parsed.string("--inject-fault") { options.faults = try faultPlan(fault) }
    #endif
    let device = try openDevice(parsed, announce: leader)
    if let communicator {
        options.parallel = try parallelism.dataParallel(communicator: communicator, device: device, report: report)
    }
    var request = RunOpener.Request(
        out: parsed.string("--out"), resume: resume, overrides: overrides, options: options, initFrom: initFrom)
    request.arguments = CommandLine.arguments
    let trainer = try RunOpener.open(
        request,
        device: device, log: report)
    let summary = try trainer.run()
    if let reason = summary.stoppedBy {
        let saved = summary.checkpoint.map { "; checkpoint \($0.path)" } ?? ""
        report(
            "stopped by \(reason) after step \(summary.step)/\(summary.totalSteps)\(saved); continue with: baton "
                + "train --out \(summary.runFolder.path) --resume auto"
        )
        communicator?.finalize()
        return
    }
    var closing = "done: \(summary.step) steps"
    if let loss = summary.finalLoss { closing += ", final loss \(String(format: "%.4f", loss))" }
    if let val = summary.finalValidationLoss { closing += ", val loss \(String(format: "%.4f", val))" }
    if let checkpoint = summary.checkpoint { closing += ", checkpoint \(checkpoint.path)" }
    report(closing + ", \(Int(summary.tokensPerSecond)) tok/s")
    communicator?.finalize()
    report(
        "plot the losses with: baton plot \(summary.runFolder.path) --out "
            + "\(summary.runFolder.appendingPathComponent("loss.svg").path)"
    )
}
