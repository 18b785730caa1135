import Baton
import CBatonSystem
import Foundation

let trainSpec = CommandSpec(
    name: "train", summary: "Train a GPT-2 model. With no flags: the default small model on the bundled corpus.",
    usage: "baton train [options]        (continue a run: baton train --out RUN --resume auto)",
    options: options("""
        --data DIR: folder of llm.c token shards (*train*.bin, *val*.bin); default data/paradise-lost
        --out DIR: run folder (default: a new folder under runs/)
        --steps N: total optimizer steps (default 2000); may be raised on resume
        --epochs N: total epochs over the training data, instead of --steps
        --batch B: sequences per micro-batch (default 12)
        --grad-accum N: micro-batches per step on each rank (default 1)
        --global-batch N: sequences per step over all ranks (default batch x grad-accum x ranks); kept on resume
        --reduce exact|fast: ranks sum gradients in a fixed tree, same bits at any power-of-two world size (default), or by MPI's all-reduce
        --allow-batch-change: resume with another --global-batch, from the same sample position
        --precision fp32|tf32|bf16: matmuls in float32, TF32 or bfloat16 with float32 sums (default: bf16 on a GPU of sm_80 or newer, else fp32); weights, moments and checkpoints stay float32
        --comm auto|mpi|nccl: how GPU ranks exchange gradients: NCCL on GPU memory, or MPI through host memory (auto: NCCL where it loads); nccl without mpirun: one rank
        --collective-timeout S: a collective that waits longer than S seconds on a rank ends the job, naming that rank (default 600; 0: wait forever)
        """) + modelOptions + options("""
        --lr X: peak learning rate (default 1e-3)
        --min-lr X: learning rate at the end of the cosine decay (default 1e-4)
        --warmup N: linear warmup steps (default 100)
        --weight-decay X: AdamW weight decay on 2-D weights (default 0.1)
        --beta1 X: AdamW beta1 (default 0.9)
        --beta2 X: AdamW beta2 (default 0.99)
        --grad-clip X: clip the global gradient norm to this; 0 turns clipping off (default 1.0)
        --seed N: seed for the initial weights and the data order (default 1337)
        --eval-every N: validation loss every N steps; 0: only at the end (default 250)
        --eval-batches N: validation batches per evaluation (default 20)
        --log-every N: print a progress line every N steps (default 10)
        --save-every N: checkpoint every N steps; 0: only at the end and when stopped (default 500)
        --keep-last K: keep the newest K checkpoints (default 3)
        --keep-every M: also keep every checkpoint whose step is a multiple of M, forever
        --stop-at STEP: stop after STEP steps, with a checkpoint (0: save the initial state)
        --init-from HF_DIR: start from a Hugging Face GPT2LMHeadModel folder (config.json + safetensors); its shape is the run's
        --resume auto|step-N|PATH: continue from the newest good checkpoint, a step, or a checkpoint folder
        --overwrite: start over in a run folder that has checkpoints; replace a checkpoint of the same step
        --allow-data-change: resume even though the data differs from the checkpoint's
        --on-nonfinite stop|skip: a NaN/Inf loss or gradient norm stops the run (default) or skips that update
        --on-save-error stop|retry: a failed save (full disk) stops the run (default) or retries at the next save
        --sample-ledger FILE: debug: record every sample index consumed (JSONL)
        """) + deviceOptions + debugTrainOptions)

/// The config flags given on the command line, parsed once.
func trainOverrides(_ parsed: ParsedArguments) throws -> TrainingConfig.Overrides {
    var o = TrainingConfig.Overrides()
    o.dataFolder = parsed.string("--data")
    o.steps = try parsed.int("--steps")
    o.epochs = try parsed.int("--epochs")
    o.batchSize = try parsed.int("--batch")
    o.gradientAccumulation = try parsed.int("--grad-accum")
    o.contextLength = try parsed.int("--seq-len")
    o.layers = try parsed.int("--layers")
    o.heads = try parsed.int("--heads")
    o.channels = try parsed.int("--embd")
    o.vocabularySize = try parsed.int("--vocab-size")
    o.learningRate = try parsed.float("--lr")
    o.minLearningRate = try parsed.float("--min-lr")
    o.warmupSteps = try parsed.int("--warmup")
    o.weightDecay = try parsed.float("--weight-decay")
    o.beta1 = try parsed.float("--beta1")
    o.beta2 = try parsed.float("--beta2")
    o.gradientClip = try parsed.float("--grad-clip")
    o.seed = try parsed.seed("--seed")
    o.evalEvery = try parsed.int("--eval-every")
    o.evalBatches = try parsed.int("--eval-batches")
    o.logEvery = try parsed.int("--log-every")
    o.saveEvery = try parsed.int("--save-every")
    o.keepLast = try parsed.int("--keep-last")
    o.keepEvery = try parsed.int("--keep-every")
    o.onNonfinite = parsed.string("--on-nonfinite")
    o.onSaveError = parsed.string("--on-save-error")
    o.globalBatch = try parsed.int("--global-batch")
    o.reduce = parsed.string("--reduce")
    o.precision = parsed.string("--precision")
    return o
}

func trainCommand(_ arguments: [String]) throws {
    guard let parsed = try trainSpec.parse(arguments) else { return }
    let resume = parsed.string("--resume").map(ResumeRequest.init)
    let overrides = try trainOverrides(parsed)
    let initFrom = parsed.string("--init-from").map { URL(fileURLWithPath: $0) }
    // Check the flags before any work, so a typo fails in an instant.
    if resume == nil && initFrom == nil { try TrainingConfig().applying(overrides).validate() }
    if resume == nil, parsed.string("--data") == nil, !FileManager.default.fileExists(atPath: TrainingConfig().dataFolder) {
        throw BatonError("--data: the default data set \(TrainingConfig().dataFolder) is not here; run from the repository root or pass --data DIR")
    }
    let stopAt = try parsed.int("--stop-at")
    if let stopAt, stopAt < 0 { throw UsageError("baton train: --stop-at must not be negative") }
    var options = RunOptions(stopAt: stopAt, overwrite: parsed.flag("--overwrite"), allowDataChange: parsed.flag("--allow-data-change"))
    options.sampleLedger = parsed.string("--sample-ledger").map { URL(fileURLWithPath: $0) }
    options.allowBatchChange = parsed.flag("--allow-batch-change")
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
    var request = RunOpener.Request(out: parsed.string("--out"), resume: resume, overrides: overrides, options: options, initFrom: initFrom)
    request.arguments = CommandLine.arguments
    let trainer = try RunOpener.open(request,
                                     device: device, log: report)
    let summary = try trainer.run()
    if let reason = summary.stoppedBy {
        let saved = summary.checkpoint.map { "; checkpoint \($0.path)" } ?? ""
        report("stopped by \(reason) after step \(summary.step)/\(summary.totalSteps)\(saved); continue with: baton train --out \(summary.runFolder.path) --resume auto")
        communicator?.finalize()
        return
    }
    var closing = "done: \(summary.step) steps"
    if let loss = summary.finalLoss { closing += ", final loss \(String(format: "%.4f", loss))" }
    if let val = summary.finalValidationLoss { closing += ", val loss \(String(format: "%.4f", val))" }
    if let checkpoint = summary.checkpoint { closing += ", checkpoint \(checkpoint.path)" }
    report(closing + ", \(Int(summary.tokensPerSecond)) tok/s")
    communicator?.finalize()
    report("plot the losses with: baton plot \(summary.runFolder.path) --out \(summary.runFolder.appendingPathComponent("loss.svg").path)")
}
