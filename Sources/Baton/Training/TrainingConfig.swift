/// Everything that defines a training run. Defaults are nanoGPT's CPU recipe on the bundled corpus.
/// Each setting is declared once, here (see Setting): `baton train`'s flags and --help, `--config`
/// files, config.json, the checks and the resume comparison all follow from these declarations,
/// in this order.
public struct TrainingConfig: Codable, Equatable, Sendable {
    @Setting("--data", "DIR", "folder of llm.c token shards (*train*.bin, *val*.bin); default {}")
    public var dataFolder = "data/paradise-lost"
    @Setting(
        "--steps", "N", "total optimizer steps (default {}); may be raised on resume", .whole(min: 1, max: 1 << 40))
    public var steps = 2000
    /// When set, `steps` was derived from this many epochs over the training data.
    @Setting("--epochs", "N", "total epochs over the training data, instead of --steps", .whole(min: 1, max: 1 << 30))
    public var epochs: Int? = nil
    @Setting("--batch", "B", "sequences per micro-batch (default {})", .whole(min: 1, max: 65536))
    public var batchSize = 12
    @Setting("--grad-accum", "N", "micro-batches per step on each rank (default {})", .whole(min: 1, max: 65536))
    public var gradientAccumulation = 1
    /// Sequences per optimizer step over all ranks. Set at a run's start (batch x grad-accum x
    /// world size when not given), so a resume at another world size keeps the same steps; another
    /// one on resume only with --allow-batch-change (RunOpener).
    @Setting(
        "--global-batch", "N", "sequences per step over all ranks (default batch x grad-accum x ranks); kept on resume",
        .whole(min: 1, max: nil), resume: .refuse(unless: "--allow-batch-change"))
    public var globalBatch: Int? = nil
    /// How ranks sum their gradients (unset: exact).
    @Setting(
        "--reduce",
        "ranks sum gradients in a fixed tree, same bits at any power-of-two world size (default), or by MPI's "
            + "all-reduce"
    )
    public var reduce: ReduceMode? = nil
    /// ZeRO stage (unset: 0). 1: each rank keeps AdamW's moments for its slice of the parameters
    /// (OptimizerSlices); the bits are those of 0, so a resume may change it.
    @Setting(
        "--zero", "N",
        "1: each rank keeps the AdamW moments of its slice of the parameters only (ZeRO-1; same bits); 0: all "
            + "(default 0)",
        .whole(min: 0, max: 1), resume: .free)
    public var zero: Int? = nil
    /// The matmuls' precision (see Precision). Unset at a fresh start: the device's default is
    /// recorded. Another one on resume is allowed, with a notice.
    @Setting(
        "--precision",
        "matmuls in float32, TF32 or bfloat16 with float32 sums (default: bf16 on a GPU of sm_80 or newer, else "
            + "fp32); weights, moments and checkpoints stay float32"
    )
    public var precision: Precision? = nil
    /// What the backward pass recomputes instead of keeping (RecomputeLevel): memory, never the
    /// bits, so a resume may change it. Unset (files from before the setting): 0.
    @Setting(
        "--recompute", "0|1|2",
        "activations recomputed in the backward pass instead of kept, for memory: 0 none (default), 1 the MLP's "
            + "GELU/SwiGLU output, 2 also the norms' outputs; the same bits at every level", resume: .free)
    public var recompute: RecomputeLevel? = nil
    public var model = GPTConfig()
    @Setting("--lr", "X", "peak learning rate (default {})", .nonNegative)
    public var learningRate: Float = 1e-3
    @Setting("--min-lr", "X", "learning rate at the end of the cosine decay (default {})", .nonNegative)
    public var minLearningRate: Float = 1e-4
    @Setting("--warmup", "N", "linear warmup steps (default {})", .whole(min: 0, max: nil))
    public var warmupSteps = 100
    /// Unset (files from before the setting): cosine.
    @Setting(
        "--schedule",
        "the learning rate after warmup: cosine (default) or linear decay to --min-lr, constant, or wsd (stable, then "
            + "a linear decay over the last --decay-fraction of the steps)")
    public var schedule: ScheduleShape? = nil
    /// Unset: 0.2.
    @Setting("--decay-fraction", "X", "wsd: the share of the steps the decay takes (default 0.2)", .fraction)
    public var decayFraction: Float? = nil
    @Setting("--weight-decay", "X", "AdamW weight decay on 2-D weights (default {})", .nonNegative)
    public var weightDecay: Float = 0.1
    @Setting("--beta1", "X", "AdamW beta1 (default {})", .fraction)
    public var beta1: Float = 0.9
    @Setting("--beta2", "X", "AdamW beta2 (default {})", .fraction)
    public var beta2: Float = 0.99
    /// AdamW's epsilon: recorded, with no flag.
    public var epsilon: Float = 1e-8
    @Setting(
        "--grad-clip", "X", "clip the global gradient norm to this; 0 turns clipping off (default {})", .nonNegative)
    public var gradientClip: Float = 1.0
    @Setting("--seed", "N", "seed for the initial weights and the data order (default {})")
    public var seed: UInt64 = 1337
    @Setting(
        "--eval-every", "N", "validation loss every N steps; 0: only at the end (default {})", .whole(min: 0, max: nil))
    public var evalEvery = 250
    @Setting("--eval-batches", "N", "validation batches per evaluation (default {})", .whole(min: 1, max: 1 << 30))
    public var evalBatches = 20
    /// HellaSwag during training (HellaSwagDuringTraining): only measured, never trained on, so a
    /// resume may add, change or keep it silently.
    @Setting(
        "--hellaswag", "FILE", "score HellaSwag examples (a JSONL file such as hellaswag_val.jsonl) during training",
        resume: .free)
    public var hellaswag: String? = nil
    /// Unset: with each validation (--eval-every).
    @Setting(
        "--hellaswag-every", "N", "--hellaswag every N steps; 0: only at the end (default: --eval-every)",
        .whole(min: 0, max: nil), resume: .free)
    public var hellaswagEvery: Int? = nil
    /// Only what is printed: a resume takes another one silently.
    @Setting(
        "--log-every", "N", "print a progress line every N steps (default {})", .whole(min: 1, max: nil),
        resume: .free)
    public var logEvery = 10
    @Setting(
        "--save-every", "N", "checkpoint every N steps; 0: only at the end and when stopped (default {})",
        .whole(min: 0, max: nil))
    public var saveEvery = 500
    /// The newest K checkpoints are kept (the newest good one is never deleted) ...
    @Setting("--keep-last", "K", "keep the newest K checkpoints (default {})", .whole(min: 1, max: nil))
    public var keepLast = 3
    /// ... and every checkpoint whose step is a multiple of M (0: none), forever.
    @Setting(
        "--keep-every", "M", "also keep every checkpoint whose step is a multiple of M, forever",
        .whole(min: 0, max: nil))
    public var keepEvery = 0
    /// A NaN or Inf loss or gradient norm: nothing of that step is applied, and the run stops or
    /// skips that update (counted).
    @Setting("--on-nonfinite", "a NaN/Inf loss or gradient norm stops the run (default) or skips that update")
    public var onNonfinite = NonfiniteRule.stop
    /// The spike guards (llm.c's -sl and -sg; SpikeWindow): unset or 0, off.
    @Setting(
        "--skip-loss-z", "Z",
        "skip an update whose loss is more than Z standard deviations above the previous 128 steps' (default and 0: "
            + "off)",
        .nonNegative)
    public var skipLossZ: Float? = nil
    @Setting(
        "--skip-grad-z", "Z",
        "skip an update whose gradient norm is more than Z standard deviations above the previous 128 steps' "
            + "(default and 0: off)", .nonNegative)
    public var skipGradientZ: Float? = nil
    /// A checkpoint save that fails (a full disk): stop, or retry at the next save.
    @Setting("--on-save-error", "a failed save (full disk) stops the run (default) or retries at the next save")
    public var onSaveError = SaveErrorRule.stop
    public var resolvedPrecision: Precision { precision ?? .fp32 }
    /// The Hugging Face folder a run started from (--init-from), with its weights files' CRC32C.
    public var initFrom: InitSource?

    /// Every setting, with the defaults as values: what --help lists, in declaration order.
    public static let settings = SettingTable.entries(of: TrainingConfig())

    /// This config's settings, with its values.
    public var settingEntries: [SettingEntry] { SettingTable.entries(of: self) }

    public struct InitSource: Codable, Equatable, Sendable {
        public var folder: String
        public var files: [String: String]
    }

    public init() {}

    public var tokensPerStep: Int { (globalBatch ?? batchSize * gradientAccumulation) * model.contextLength }

    /// Checks the numbers a user can get wrong. Given on the command line (`file` nil): a usage
    /// error naming the flag. Read from `file` (a checkpoint's state.json, whose `config` this is):
    /// an error naming the file and the key, since no flag was passed.
    public func validate(file: String? = nil) throws {
        if let file {
            if let (_, text) = problem(naming: { key, _ in "config.\(key)" }) { throw BatonError("\(file): \(text)") }
        } else if let (flag, text) = problem(naming: { _, flag in flag }) {
            throw BatonError.invalidFlag(flag: flag, message: text)
        }
    }

    /// The first setting that cannot be used (the model's shape first), and why, each setting called
    /// `name(key, flag)`: its flag, or its key where it was read from a file.
    func problem(naming name: (_ key: String, _ flag: String) -> String) -> (flag: String, text: String)? {
        // GPTConfig.Field's cases are named as GPTConfig's properties, its keys in config.json.
        if let (field, text) = model.problem(naming: { name("model.\($0.rawValue)", $0.flag) }) {
            return (field.flag, text)
        }
        for entry in settingEntries where !entry.key.hasPrefix("model.") {
            if let text = entry.violation { return (entry.flag, "\(name(entry.key, entry.flag)) \(text)") }
        }
        return nil
    }
}

/// How ranks sum their gradients: a pairwise tree whose order does not depend on the world size,
/// or the library's all-reduce.
public enum ReduceMode: String, SettingMode { case exact, fast }

/// What a NaN or Inf loss or gradient norm does.
public enum NonfiniteRule: String, SettingMode { case stop, skip }

/// What a failed checkpoint save does.
public enum SaveErrorRule: String, SettingMode { case stop, retry }

extension Precision: SettingMode {}

/// `--recompute 0|1|2`: its number, in flags and in config.json.
extension RecomputeLevel: SettingValue {
    public init?(settingText: String) {
        guard let number = Int(settingText) else { return nil }
        self.init(rawValue: number)
    }
    public var settingText: String { String(rawValue) }
    public var settingNumber: Double? { Double(rawValue) }
    public static var settingKind: String { "0, 1 or 2" }
}
