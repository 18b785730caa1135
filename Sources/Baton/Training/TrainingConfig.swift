/// Everything that defines a training run. Defaults are nanoGPT's CPU recipe on the bundled corpus.
public struct TrainingConfig: Codable, Equatable, Sendable {
    public var model = GPTConfig(contextLength: 64, vocabularySize: 256, layers: 4, heads: 4, channels: 128)
    public var dataFolder = "data/paradise-lost"
    public var batchSize = 12
    public var gradientAccumulation = 1
    public var steps = 2000
    public var learningRate: Float = 1e-3
    public var minLearningRate: Float = 1e-4
    public var warmupSteps = 100
    public var weightDecay: Float = 0.1
    public var beta1: Float = 0.9
    public var beta2: Float = 0.99
    public var epsilon: Float = 1e-8
    public var gradientClip: Float = 1.0
    public var seed: UInt64 = 1337
    public var evalEvery = 250
    public var evalBatches = 20
    public var logEvery = 10
    /// Save a checkpoint every N steps (0: only at the end and when stopped).
    public var saveEvery = 500
    /// Keep the newest K checkpoints (the newest good one is never deleted) ...
    public var keepLast = 3
    /// ... and every checkpoint whose step is a multiple of M (0: none), forever.
    public var keepEvery = 0
    /// When set, `steps` was derived from this many epochs over the training data.
    public var epochs: Int?
    /// A NaN or Inf loss or gradient norm: "stop" (the default; nothing of that step is applied)
    /// or "skip" (that update is skipped and counted).
    public var onNonfinite = "stop"
    /// A checkpoint save that fails (a full disk): "stop" (the default) or "retry" at the next save.
    public var onSaveError = "stop"
    /// Sequences per optimizer step over all ranks. Set at a run's start (batch x grad-accum x
    /// world size when not given), so a resume at another world size keeps the same steps.
    public var globalBatch: Int?
    /// How ranks sum their gradients: "exact" (nil: a pairwise tree whose order does not depend
    /// on the world size) or "fast" (the library's all-reduce). Optional, so configs from before
    /// it still load.
    public var reduce: String?
    /// The matmuls' precision: "fp32" (nil), "tf32" or "bf16" (see Precision). Optional, so
    /// configs from before it still load; another one on resume is allowed, with a notice.
    public var precision: String?
    public var resolvedPrecision: Precision { precision.flatMap(Precision.init(rawValue:)) ?? .fp32 }
    /// The Hugging Face folder a run started from (--init-from), with its weights files' CRC32C.
    public var initFrom: InitSource?

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
            // GPTConfig.Field's cases are named as GPTConfig's properties, its keys in state.json.
            try model.validate(file: file, key: { "config.model.\($0)" })
        } else {
            try model.validate()
        }
        // Each check names its flag and its key in state.json.
        func invalid(_ flag: String, _ key: String, _ text: String) -> BatonError {
            guard let file else { return .invalidFlag(flag: flag, message: "\(flag) \(text)") }
            return BatonError("\(file): config.\(key) \(text)")
        }
        let positive: [(String, String, Int)] = [("--batch", "batchSize", batchSize), ("--grad-accum", "gradientAccumulation", gradientAccumulation),
                                                 ("--steps", "steps", steps), ("--eval-batches", "evalBatches", evalBatches),
                                                 ("--log-every", "logEvery", logEvery), ("--keep-last", "keepLast", keepLast),
                                                 ("--epochs", "epochs", epochs ?? 1)]
        for (flag, key, value) in positive where value < 1 { throw invalid(flag, key, "must be at least 1, got \(value)") }
        for (flag, key, value, limit) in [("--batch", "batchSize", batchSize, 65536), ("--grad-accum", "gradientAccumulation", gradientAccumulation, 65536),
                                          ("--steps", "steps", steps, 1 << 40), ("--epochs", "epochs", epochs ?? 1, 1 << 30),
                                          ("--eval-batches", "evalBatches", evalBatches, 1 << 30)]
            where value > limit {
            throw invalid(flag, key, "\(value) is larger than Baton supports (\(limit))")
        }
        for (flag, key, value) in [("--warmup", "warmupSteps", warmupSteps), ("--eval-every", "evalEvery", evalEvery),
                                   ("--save-every", "saveEvery", saveEvery), ("--keep-every", "keepEvery", keepEvery)] where value < 0 {
            throw invalid(flag, key, "must not be negative, got \(value)")
        }
        for (flag, key, value) in [("--lr", "learningRate", learningRate), ("--min-lr", "minLearningRate", minLearningRate),
                                   ("--weight-decay", "weightDecay", weightDecay), ("--grad-clip", "gradientClip", gradientClip)]
            where !(value >= 0 && value.isFinite) {
            throw invalid(flag, key, "must be a finite number >= 0, got \(value)")
        }
        if !["stop", "skip"].contains(onNonfinite) { throw invalid("--on-nonfinite", "onNonfinite", "expects stop or skip, got '\(onNonfinite)'") }
        if let precision, Precision(rawValue: precision) == nil { throw invalid("--precision", "precision", "expects fp32, tf32 or bf16, got '\(precision)'") }
        if let reduce, !["exact", "fast"].contains(reduce) { throw invalid("--reduce", "reduce", "expects exact or fast, got '\(reduce)'") }
        if let globalBatch, globalBatch < 1 { throw invalid("--global-batch", "globalBatch", "must be at least 1, got \(globalBatch)") }
        if !["stop", "retry"].contains(onSaveError) { throw invalid("--on-save-error", "onSaveError", "expects stop or retry, got '\(onSaveError)'") }
        if !(beta1 >= 0 && beta1 < 1) { throw invalid("--beta1", "beta1", "must be in [0, 1), got \(beta1)") }
        if !(beta2 >= 0 && beta2 < 1) { throw invalid("--beta2", "beta2", "must be in [0, 1), got \(beta2)") }
    }
}

extension TrainingConfig {
    /// The config values given on the command line, each nil when not given: applied over the
    /// defaults for a fresh run, or over the checkpoint's config for a resumed one.
    public struct Overrides: Sendable {
        public var dataFolder: String?
        public var steps: Int?
        public var epochs: Int?
        public var batchSize: Int?
        public var gradientAccumulation: Int?
        public var contextLength: Int?, layers: Int?, heads: Int?, channels: Int?, vocabularySize: Int?
        public var learningRate: Float?, minLearningRate: Float?
        public var warmupSteps: Int?
        public var weightDecay: Float?, beta1: Float?, beta2: Float?, gradientClip: Float?
        public var seed: UInt64?
        public var evalEvery: Int?, evalBatches: Int?, logEvery: Int?
        public var saveEvery: Int?, keepLast: Int?, keepEvery: Int?
        public var onNonfinite: String?, onSaveError: String?
        public var globalBatch: Int?, reduce: String?
        public var precision: String?

        public init() {}
    }

    /// This config with `overrides` applied. `--steps` given alone drops a previous `--epochs`.
    public func applying(_ overrides: Overrides) -> TrainingConfig {
        var config = self
        func set<T>(_ path: WritableKeyPath<TrainingConfig, T>, _ value: T?) { if let value { config[keyPath: path] = value } }
        set(\.dataFolder, overrides.dataFolder)
        if let steps = overrides.steps { config.steps = steps; config.epochs = nil }
        if let epochs = overrides.epochs { config.epochs = epochs }
        set(\.batchSize, overrides.batchSize)
        set(\.gradientAccumulation, overrides.gradientAccumulation)
        set(\.model.contextLength, overrides.contextLength)
        set(\.model.layers, overrides.layers)
        set(\.model.heads, overrides.heads)
        set(\.model.channels, overrides.channels)
        set(\.model.vocabularySize, overrides.vocabularySize)
        set(\.learningRate, overrides.learningRate)
        set(\.minLearningRate, overrides.minLearningRate)
        set(\.warmupSteps, overrides.warmupSteps)
        set(\.weightDecay, overrides.weightDecay)
        set(\.beta1, overrides.beta1)
        set(\.beta2, overrides.beta2)
        set(\.gradientClip, overrides.gradientClip)
        set(\.seed, overrides.seed)
        set(\.evalEvery, overrides.evalEvery)
        set(\.evalBatches, overrides.evalBatches)
        set(\.logEvery, overrides.logEvery)
        set(\.saveEvery, overrides.saveEvery)
        set(\.keepLast, overrides.keepLast)
        set(\.keepEvery, overrides.keepEvery)
        set(\.onNonfinite, overrides.onNonfinite)
        set(\.onSaveError, overrides.onSaveError)
        if let global = overrides.globalBatch { config.globalBatch = global }
        if let reduce = overrides.reduce { config.reduce = reduce }
        if let precision = overrides.precision { config.precision = precision }
        return config
    }
}
