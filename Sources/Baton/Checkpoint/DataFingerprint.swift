/// Which data a run trained on: each shard's name, size and token count.
public struct DataFingerprint: Codable, Equatable, Sendable {
    public struct Shard: Codable, Equatable, Sendable {
        public var name: String
        public var bytes: Int
        public var tokens: Int
    }

    public var train: [Shard]
    public var val: [Shard]

    public init(train: TokenDataset, val: TokenDataset?) {
        func shards(_ dataset: TokenDataset?) -> [Shard] {
            (dataset?.shards ?? []).map { Shard(name: $0.url.lastPathComponent, bytes: $0.fileSize, tokens: $0.tokenCount) }
        }
        self.train = shards(train)
        self.val = shards(val)
    }

    /// A line saying how two fingerprints differ, for the refusal message.
    public func difference(from other: DataFingerprint) -> String {
        func describe(_ shards: [Shard]) -> String { shards.map { "\($0.name) (\($0.tokens) tokens)" }.joined(separator: ", ") }
        if train != other.train { return "train shards were \(describe(other.train)), now \(describe(train))" }
        if val != other.val { return "val shards were \(describe(other.val)), now \(describe(val))" }
        return "no difference"
    }
}
