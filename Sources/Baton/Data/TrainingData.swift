import Foundation

/// The training and validation shards of a run, opened and checked once.
public struct TrainingData {
    public let train: TokenDataset
    public let validation: TokenDataset?

    public var fingerprint: DataFingerprint { DataFingerprint(train: train, val: validation) }
    /// The tokens of every shard, train then validation, as one number (see TokenShard.contentDigest).
    public var contentDigest: [UInt32] { (train.shards + (validation?.shards ?? [])).map(\.contentDigest) }

    public static func open(config: TrainingConfig, log: (String) -> Void) throws -> TrainingData {
        let folder = URL(fileURLWithPath: config.dataFolder)
        let T = config.model.contextLength, V = config.model.vocabularySize
        // A folder with a dataset.json that lists its shards must hold exactly those shards.
        let record = try DatasetRecord.read(dataFolder: folder)
        try record?.checkShardNames(in: folder)
        let train = try TokenDataset.open(folder: folder, split: "train", sequenceLength: T, vocabularySize: V)
        var val: TokenDataset?
        do {
            val = try TokenDataset.open(folder: folder, split: "val", sequenceLength: T, vocabularySize: V)
        } catch BatonError.noShards(_, "val") {
            log("warning: no *val*.bin shard in \(folder.path); no validation loss")
        }
        try record?.checkShards(train.shards + (val?.shards ?? []), in: folder)
        guard train.sampleCount >= config.batchSize else {
            throw BatonError(
                "--data \(folder.path): training shards hold \(train.sampleCount) sequences of \(T)+1 tokens, fewer "
                    + "than one batch (--batch \(config.batchSize)); use more text or a smaller --batch/--seq-len"
            )
        }
        var validation: TokenDataset?
        if let val {
            if val.sampleCount >= config.batchSize {
                validation = val
            } else {
                log("warning: validation shards hold fewer than one batch of sequences; no validation loss")
            }
        }
        return TrainingData(train: train, validation: validation)
    }
}
