/// Which data a run trained on: each shard's name, size, token count and tokens' CRC-32C.
public struct DataFingerprint: Codable, Equatable, Sendable {
    public struct Shard: Codable, Equatable, Sendable {
        public var name: String
        public var bytes: Int
        public var tokens: Int
        /// CRC-32C of the tokens (TokenShard.contentDigest), 8 hex digits: a shard re-prepared
        /// with the same name and size but other tokens differs here. Absent in checkpoints
        /// written before it was recorded; those compare on name, size and count alone.
        public var crc32c: String?

        /// Equal on what both recorded: a checkpoint without crc32c compares on name, size and
        /// count alone, so it still resumes (RunOpener.checkData compares with ==).
        public static func == (a: Shard, b: Shard) -> Bool {
            a.name == b.name && a.bytes == b.bytes && a.tokens == b.tokens
                && (a.crc32c == nil || b.crc32c == nil || a.crc32c == b.crc32c)
        }
    }

    public var train: [Shard]
    public var val: [Shard]

    public init(train: TokenDataset, val: TokenDataset?) {
        func shards(_ dataset: TokenDataset?) -> [Shard] {
            (dataset?.shards ?? []).map {
                Shard(
                    name: $0.url.lastPathComponent, bytes: $0.fileSize, tokens: $0.tokenCount,
                    crc32c: TensorFile.hex($0.contentDigest))
            }
        }
        self.train = shards(train)
        self.val = shards(val)
    }

    /// A line saying how the data now (self) differs from `other` (the saved), for the refusal
    /// message: a shard that kept its name and size but not its tokens by name, else both lists.
    public func difference(from other: DataFingerprint) -> String {
        func describe(_ shards: [Shard]) -> String {
            shards.map { "\($0.name) (\($0.tokens) tokens)" }.joined(separator: ", ")
        }
        for (split, now, saved) in [("train", train, other.train), ("val", val, other.val)] where now != saved {
            if now.count == saved.count, let (new, old) = zip(now, saved).first(where: { $0 != $1 }),
                new.name == old.name && new.bytes == old.bytes && new.tokens == old.tokens
            {
                return
                    "\(split) shard \(new.name) holds other tokens than before (crc32c \(new.crc32c ?? "?"), was "
                    + "\(old.crc32c ?? "?"))"
            }
            return "\(split) shards were \(describe(saved)), now \(describe(now))"
        }
        return "no difference"
    }
}
