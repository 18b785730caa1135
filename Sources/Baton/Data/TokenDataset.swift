import Foundation

/// The samples in a set of shards. Sample i is a window of T+1 tokens (inputs and the targets
/// shifted by one); windows start every T tokens and never cross a shard boundary. From masked
/// shards (`baton prepare --sft`) a target that is not trained on reads as -1, which the loss
/// ignores.
public final class TokenDataset {
    public let shards: [TokenShard]
    public let sequenceLength: Int
    /// Whether the shards are masked (all of them: a mix is refused when opened).
    public let hasLossMask: Bool
    /// samplesBefore[s]: number of samples in shards before s.
    private let samplesBefore: [Int]
    public let sampleCount: Int

    public init(shards: [TokenShard], sequenceLength T: Int) {
        self.shards = shards
        self.sequenceLength = T
        hasLossMask = shards.first?.format == .masked
        var before: [Int] = []
        var total = 0
        for shard in shards {
            before.append(total)
            total += max(0, (shard.tokenCount - 1) / T)
        }
        samplesBefore = before
        sampleCount = total
    }

    /// Opens the shards of a data folder that match `pattern` ("train" or "val"), sorted by name.
    public static func open(folder: URL, split: String, sequenceLength: Int, vocabularySize: Int) throws -> TokenDataset
    {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder.path) } catch {
            throw BatonError("--data \(folder.path): no such folder; create one with baton prepare TEXT --out DIR")
        }
        let matching = names.filter { $0.hasSuffix(".bin") && $0.contains(split) }.sorted()
        guard !matching.isEmpty else {
            throw BatonError.noShards(folder: folder.path, split: split)
        }
        let shards = try matching.map {
            try TokenShard(url: folder.appendingPathComponent($0), vocabularySize: vocabularySize)
        }
        if let first = shards.first,
            let other = shards.first(where: { ($0.format == .masked) != (first.format == .masked) })
        {
            throw BatonError(
                "--data \(folder.path): \(other.url.lastPathComponent) and \(first.url.lastPathComponent) are not both "
                    + "masked (baton prepare --sft) shards; keep one kind in a folder")
        }
        return TokenDataset(shards: shards, sequenceLength: sequenceLength)
    }

    /// Writes sample `index`'s inputs and targets (T tokens each).
    public func copySample(
        _ index: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>
    ) throws {
        precondition(index >= 0 && index < sampleCount)
        var shardIndex = 0
        var low = 0, high = samplesBefore.count - 1
        while low <= high {  // last shard whose first sample is <= index
            let mid = (low + high) / 2
            if samplesBefore[mid] <= index { shardIndex = mid; low = mid + 1 } else { high = mid - 1 }
        }
        let start = (index - samplesBefore[shardIndex]) * sequenceLength
        var window = [Int32](repeating: 0, count: sequenceLength + 1)
        guard hasLossMask else {
            try window.withUnsafeMutableBufferPointer {
                try shards[shardIndex].copyTokens(start: start, count: sequenceLength + 1, into: $0.baseAddress!)
            }
            window.withUnsafeBufferPointer { w in
                inputs.update(from: w.baseAddress!, count: sequenceLength)
                targets.update(from: w.baseAddress! + 1, count: sequenceLength)
            }
            return
        }
        var trainedOn = [Bool](repeating: false, count: sequenceLength + 1)
        try window.withUnsafeMutableBufferPointer { w in
            try trainedOn.withUnsafeMutableBufferPointer {
                try shards[shardIndex].copyTokens(
                    start: start, count: sequenceLength + 1, into: w.baseAddress!, trainedOn: $0.baseAddress!)
            }
        }
        for i in 0..<sequenceLength {
            inputs[i] = window[i]
            targets[i] = trainedOn[i + 1] ? window[i + 1] : -1  // the flag is the predicted token's
        }
    }

    public var description: String {
        shards.map { "\($0.url.lastPathComponent) (\($0.tokenCount) tokens)" }.joined(separator: ", ")
    }
}

/// A batch of B sequences of T tokens, flattened row-major.
public struct Batch {
    public var inputs: [Int32]
    public var targets: [Int32]
    public var sampleIndices: [Int]
    /// Where in the data this batch was taken from.
    public var position: LoaderPosition
}

/// Where a loader stands: the epoch and the index within that epoch's order. The index is 0 at
/// the start of every epoch; there is no other offset.
public struct LoaderPosition: Codable, Equatable, Sendable {
    public var epoch: Int
    public var index: Int
    public init(epoch: Int = 0, index: Int = 0) { self.epoch = epoch; self.index = index }
}

/// The batches of an epoch-ordered pass over a dataset. Each epoch visits every sample exactly
/// once, in an order that is a pure function of (seed, epoch); a tail shorter than a batch is
/// dropped. The loader has no position of its own: it answers "the batch at this position" and
/// "the position after it", so the run's position lives in one place (TrainingState) and a
/// resumed run reads on from the checkpoint's position without replaying anything.
public final class DataLoader {
    public let dataset: TokenDataset
    public let batchSize: Int
    public let seed: UInt64
    public let shuffle: Bool
    /// The last epoch's order, kept because consecutive batches share it.
    private var cachedOrder: (epoch: Int, order: [Int])?

    public init(dataset: TokenDataset, batchSize: Int, seed: UInt64, shuffle: Bool = true) {
        self.dataset = dataset
        self.batchSize = batchSize
        self.seed = seed
        self.shuffle = shuffle
    }

    public var batchesPerEpoch: Int { dataset.sampleCount / batchSize }

    /// The position a batch is really read from: an epoch with less than a batch left is over, so
    /// the position moves to (next epoch, 0) at once, and a checkpoint taken at an epoch boundary
    /// already names the next epoch's start.
    public func normalized(_ position: LoaderPosition) -> LoaderPosition {
        position.index + batchSize > dataset.sampleCount
            ? LoaderPosition(epoch: position.epoch + 1, index: 0) : position
    }

    /// Where the batch after the one at `position` starts.
    public func position(after position: LoaderPosition) -> LoaderPosition {
        let start = normalized(position)
        return normalized(LoaderPosition(epoch: start.epoch, index: start.index + batchSize))
    }

    /// The order of samples in `epoch`: Fisher-Yates driven by a generator seeded from (seed, epoch).
    public func order(epoch: Int) -> [Int] {
        if let cached = cachedOrder, cached.epoch == epoch { return cached.order }
        var order = Array(0..<dataset.sampleCount)
        if shuffle {
            var generator = RandomGenerator(seed: RandomGenerator.derive(seed, UInt64(epoch)))
            for i in stride(from: order.count - 1, to: 0, by: -1) {
                let j = Int(generator.next() % UInt64(i + 1))
                order.swapAt(i, j)
            }
        }
        cachedOrder = (epoch, order)
        return order
    }

    /// The sample indices of the batch at `position`, and where it really starts.
    public func sampleIndices(at position: LoaderPosition) -> (start: LoaderPosition, indices: [Int]) {
        let start = normalized(position)
        return (start, Array(order(epoch: start.epoch)[start.index..<(start.index + batchSize)]))
    }

    /// The batch that starts at `position` (normalized first).
    public func batch(at position: LoaderPosition) throws -> Batch {
        precondition(batchesPerEpoch > 0, "dataset smaller than one batch")
        let start = normalized(position)
        let order = self.order(epoch: start.epoch)
        let T = dataset.sequenceLength
        let indices = Array(order[start.index..<(start.index + batchSize)])
        var inputs = [Int32](repeating: 0, count: batchSize * T)
        var targets = [Int32](repeating: 0, count: batchSize * T)
        try inputs.withUnsafeMutableBufferPointer { inp in
            try targets.withUnsafeMutableBufferPointer { tgt in
                for (row, sample) in indices.enumerated() {
                    try dataset.copySample(
                        sample, inputs: inp.baseAddress! + row * T, targets: tgt.baseAddress! + row * T)
                }
            }
        }
        return Batch(inputs: inputs, targets: targets, sampleIndices: indices, position: start)
    }
}
