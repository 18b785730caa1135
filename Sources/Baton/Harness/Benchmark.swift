/// Tokens/s of whole training steps (forward, backward, global norm, AdamW) on random tokens.
public enum Benchmark {
    public struct Result {
        public let tokensPerSecond: Double
        public let secondsPerStep: Double
        public let parameters: Int
        /// Bytes of the activations the steps allocated (Activations.byteCount), and the line that says so.
        public let activationBytes: Int
        public let activationSummary: String
        /// With `profile`: the same steps again, each op timed (OpProfiler).
        public let profile: OpProfiler?
    }

    public static func run(
        model config: GPTConfig, batchSize: Int, steps: Int, warmupSteps: Int, device: Device,
        seed: UInt64 = 1, profile: Bool = false, recompute: RecomputeLevel = .off
    ) throws -> Result {
        let model = try GPT(config: config, device: device)
        model.recompute = recompute
        try model.initializeParameters(seed: seed)
        let step = TrainingStep(
            model: model, optimizer: try AdamW(model: model, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0.1))
        var generator = RandomGenerator(seed: seed)
        let T = config.contextLength, count = batchSize * T
        let tokens = (0..<(count + 1)).map { _ in Int32(generator.next() % UInt64(config.vocabularySize)) }
        let inputs = Array(tokens[0..<count]), targets = Array(tokens[1...count])
        var measured = 0.0
        for index in 0..<(warmupSteps + steps) {
            let start = monotonicSeconds()
            _ = try step.run(
                microBatches: [(inputs, targets)], B: batchSize, T: T, learningRate: 1e-4, gradientClip: 1,
                updateNumber: index + 1)
            try device.synchronize()
            if index >= warmupSteps { measured += monotonicSeconds() - start }
        }
        let perStep = measured / Double(steps)
        var profiler: OpProfiler?
        if profile {  // after the timed steps, so the tokens/s above are a normal step's
            let attached = OpProfiler()
            device.profiler = attached
            defer { device.profiler = nil }
            let start = monotonicSeconds()
            for index in 0..<steps {
                _ = try step.run(
                    microBatches: [(inputs, targets)], B: batchSize, T: T, learningRate: 1e-4, gradientClip: 1,
                    updateNumber: warmupSteps + steps + index + 1)
            }
            try device.synchronize()
            attached.wallSeconds = monotonicSeconds() - start  // the ops' total must fit inside it
            profiler = attached
        }
        return Result(
            tokensPerSecond: Double(count) / perStep, secondsPerStep: perStep, parameters: model.parameterCount,
            activationBytes: model.activationByteCount(B: batchSize, T: T),
            activationSummary: model.activationSummary(B: batchSize, T: T), profile: profiler)
    }
}
