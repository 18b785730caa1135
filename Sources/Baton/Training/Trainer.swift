import Foundation

/// What a finished run reports.
public struct TrainingSummary {
    public let steps: Int
    public let finalLoss: Float
    public let finalValidationLoss: Float?
    public let tokensPerSecond: Double
    public let runFolder: URL
}

/// The training loop: batches -> forward/backward (with accumulation) -> clip -> AdamW ->
/// metrics, with validation every `evalEvery` steps and the weights written at the end.
public final class Trainer {
    public let config: TrainingConfig
    public let model: GPT
    public let optimizer: AdamW
    public let schedule: LearningRateSchedule
    public let trainLoader: DataLoader
    public let validationSet: TokenDataset?
    public let runFolder: RunFolder
    private let log: (String) -> Void

    public init(config: TrainingConfig, device: any Device, runFolder: RunFolder, log: @escaping (String) -> Void) throws {
        try config.validate()
        self.config = config
        self.log = log
        self.runFolder = runFolder
        let folder = URL(fileURLWithPath: config.dataFolder)
        let T = config.model.contextLength, V = config.model.vocabularySize
        let train = try TokenDataset.open(folder: folder, split: "train", sequenceLength: T, vocabularySize: V)
        guard train.sampleCount >= config.batchSize else {
            throw BatonError("--data \(folder.path): training shards hold \(train.sampleCount) sequences of \(T)+1 tokens, fewer than one batch (--batch \(config.batchSize)); use more text or a smaller --batch/--seq-len")
        }
        trainLoader = DataLoader(dataset: train, batchSize: config.batchSize, seed: config.seed)
        var validation: TokenDataset?
        do {
            let val = try TokenDataset.open(folder: folder, split: "val", sequenceLength: T, vocabularySize: V)
            if val.sampleCount >= config.batchSize { validation = val } else {
                log("warning: validation shards hold fewer than one batch of sequences; no validation loss")
            }
        } catch let error as BatonError where error.message.contains("no *val*.bin") {
            log("warning: no *val*.bin shard in \(folder.path); no validation loss")
        }
        validationSet = validation
        model = try GPT(config: config.model, device: device)
        try model.initializeParameters(seed: config.seed)
        optimizer = try AdamW(model: model, beta1: config.beta1, beta2: config.beta2, epsilon: config.epsilon, weightDecay: config.weightDecay)
        schedule = LearningRateSchedule(maximum: config.learningRate, minimum: config.minLearningRate,
                                        warmupSteps: config.warmupSteps, totalSteps: config.steps)
        try runFolder.writeConfig(RunFolder.Record(
            baton_version: batonVersion, device: device.summary, parameters: model.parameterCount,
            train_data: train.description, val_data: validation?.description ?? "none", config: config))
    }

    /// One optimizer step over `gradientAccumulation` micro-batches. Returns (mean loss, grad norm).
    public func trainStep(step: Int) throws -> (loss: Float, gradientNorm: Float) {
        try model.zeroGradients()
        var lossSum: Float = 0
        let micro = config.gradientAccumulation
        for _ in 0..<micro {
            let batch = trainLoader.nextBatch()
            lossSum += try model.forward(inputs: batch.inputs, targets: batch.targets, B: config.batchSize,
                                         T: config.model.contextLength, lossScaleForBackward: 1 / Float(micro))
            try model.backward()
        }
        let norm = try model.device.globalNormSquared(model.gradients).squareRoot()
        try optimizer.update(step: step + 1, learningRate: schedule.learningRate(atStep: step),
                             gradientScale: AdamW.clipScale(norm: norm, maxNorm: config.gradientClip))
        return (lossSum / Float(micro), norm)
    }

    public func validationLoss() throws -> Float? {
        guard let validationSet else { return nil }
        return try Evaluation.meanLoss(model: model, dataset: validationSet, batchSize: config.batchSize, batches: config.evalBatches)
    }

    public func run() throws -> TrainingSummary {
        let metrics = try MetricsLog(url: runFolder.metricsURL)
        log("model: \(config.model.layers) layers, \(config.model.heads) heads, \(config.model.channels) channels, context \(config.model.contextLength), vocabulary \(config.model.vocabularySize): \(model.parameterCount) parameters")
        log("data: \(trainLoader.dataset.sampleCount) training sequences, \(trainLoader.batchesPerEpoch) batches per epoch")
        log("run folder: \(runFolder.url.path)")
        var lastLoss: Float = .nan
        var lastValidation: Float?
        var smoothedStepSeconds: Double?
        var totalSeconds = 0.0
        for step in 0..<config.steps {
            let start = monotonicSeconds()
            let (loss, norm) = try trainStep(step: step)
            let seconds = monotonicSeconds() - start
            totalSeconds += seconds
            smoothedStepSeconds = smoothedStepSeconds.map { 0.9 * $0 + 0.1 * seconds } ?? seconds
            let tokensPerSecond = Double(config.tokensPerStep) / seconds
            let stepNumber = step + 1
            var record = StepMetrics(step: stepNumber, epoch: trainLoader.position.epoch, loss: loss,
                                     lr: schedule.learningRate(atStep: step), grad_norm: norm, tokens_per_s: tokensPerSecond)
            let isLast = stepNumber == config.steps
            if (config.evalEvery > 0 && stepNumber % config.evalEvery == 0) || isLast {
                record.val_loss = try validationLoss()
                lastValidation = record.val_loss ?? lastValidation
            }
            try metrics.append(record)
            lastLoss = loss
            if stepNumber == 1 || stepNumber % config.logEvery == 0 || isLast || record.val_loss != nil {
                let eta = Double(config.steps - stepNumber) * (smoothedStepSeconds ?? 0)
                var line = "step \(stepNumber)/\(config.steps) | loss \(fixed(loss, 4)) | lr \(scientific(record.lr)) | grad norm \(fixed(norm, 3)) | \(Int(tokensPerSecond)) tok/s | ETA \(formatDuration(eta))"
                if let val = record.val_loss { line += " | val loss \(fixed(val, 4))" }
                log(line)
            }
            if !loss.isFinite { throw BatonError("step \(stepNumber): loss is \(loss); lower --lr or check the data") }
        }
        try ModelWeights.save(model, to: runFolder.weightsURL)
        log("saved weights to \(runFolder.weightsURL.path)")
        return TrainingSummary(steps: config.steps, finalLoss: lastLoss, finalValidationLoss: lastValidation,
                               tokensPerSecond: Double(config.tokensPerStep * config.steps) / totalSeconds, runFolder: runFolder.url)
    }
}

func fixed(_ value: Float, _ digits: Int) -> String { String(format: "%.\(digits)f", Double(value)) }
func scientific(_ value: Float) -> String { String(format: "%.2e", Double(value)) }
