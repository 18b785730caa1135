/// Mean next-token loss of a model over sequences, batched.
public enum Evaluation {
    /// Loss over the first `batches` sequential batches of `dataset` (no shuffling): the mean of
    /// the batches' means, or for masked data the mean over all their counted targets (0 for none).
    public static func meanLoss(model: GPT, dataset: TokenDataset, batchSize: Int, batches: Int) throws -> Float {
        let loader = DataLoader(dataset: dataset, batchSize: batchSize, seed: 0, shuffle: false)
        let count = min(batches, loader.batchesPerEpoch)
        precondition(count > 0)
        var sum = 0.0
        if dataset.hasLossMask {
            var counted = 0
            for index in 0..<count {
                let batch = try loader.batch(at: LoaderPosition(epoch: 0, index: index * batchSize))
                try model.forward(inputs: batch.inputs, targets: batch.targets, B: batchSize, T: dataset.sequenceLength)
                sum += GPT.lossSum(try model.lastLosses()[...])
                counted += GPT.trainedTargetCount(batch.targets[...])
            }
            return counted == 0 ? 0 : Float(sum / Double(counted))
        }
        for index in 0..<count {
            let batch = try loader.batch(at: LoaderPosition(epoch: 0, index: index * batchSize))
            sum += Double(
                try model.forward(inputs: batch.inputs, targets: batch.targets, B: batchSize, T: dataset.sequenceLength)
            )
        }
        return Float(sum / Double(count))
    }

    /// `baton eval`: the mean loss over the first `sequences` consecutive sequences of a shard.
    /// Sequence i has inputs tokens[i*T ..< i*T+T] and targets one token later. A masked shard's
    /// (prepare --sft): the mean over its trained-on targets (0 when there are none).
    public static func meanLoss(model: GPT, shard: TokenShard, sequences: Int) throws -> Float {
        let T = model.config.contextLength
        guard sequences >= 1 else {
            throw BatonError.invalidFlag(
                flag: "--sequences", message: "--sequences must be at least 1, got \(sequences)")
        }
        guard sequences * T + 1 <= shard.tokenCount else {
            throw BatonError(
                "\(shard.url.path): \(shard.tokenCount) tokens hold \((shard.tokenCount - 1) / T) sequences of "
                    + "\(T)+1, asked for \(sequences)"
            )
        }
        let B = min(sequences, 8)
        var sum = 0.0
        var done = 0, counted = 0
        let masked = shard.format == .masked
        var trainedOn = [Bool](repeating: true, count: T)
        while done < sequences {
            let rows = min(B, sequences - done)
            var inputs = [Int32](repeating: 0, count: B * T), targets = [Int32](repeating: 0, count: B * T)
            for row in 0..<B {
                // Rows past the end repeat the last sequence; their losses are not counted.
                let sequence = done + min(row, rows - 1)
                try inputs.withUnsafeMutableBufferPointer {
                    try shard.copyTokens(start: sequence * T, count: T, into: $0.baseAddress! + row * T)
                }
                try targets.withUnsafeMutableBufferPointer { target in
                    try trainedOn.withUnsafeMutableBufferPointer {
                        try shard.copyTokens(
                            start: sequence * T + 1, count: T, into: target.baseAddress! + row * T,
                            trainedOn: $0.baseAddress!)
                    }
                }
                for i in 0..<T where !trainedOn[i] { targets[row * T + i] = -1 }
            }
            try model.forward(inputs: inputs, targets: targets, B: B, T: T)
            let losses = try model.lastLosses()
            for i in 0..<(rows * T) { sum += Double(losses[i]) }
            counted += GPT.trainedTargetCount(targets[..<(rows * T)])
            done += rows
        }
        if masked { return counted == 0 ? 0 : Float(sum / Double(counted)) }
        return Float(sum / Double(sequences * T))
    }
}
