/// The shape of a GPT-2 model.
public struct GPTConfig: Codable, Equatable, Sendable {
    /// Longest sequence the position embedding covers (GPT-2's n_positions).
    public var contextLength: Int
    public var vocabularySize: Int
    public var layers: Int
    public var heads: Int
    public var channels: Int

    /// The vocabulary rounded up to a multiple of 64 (50,257 -> 50,304), as llm.c pads it: the
    /// token embedding and the logits have this many rows/columns in memory, so the LM head's
    /// matmuls have aligned leading dimensions. The rows past the vocabulary stay zero and their
    /// logits are masked; checkpoints and exports hold the vocabulary's rows only.
    public var paddedVocabularySize: Int { (vocabularySize + 63) / 64 * 64 }

    public init(contextLength: Int, vocabularySize: Int, layers: Int, heads: Int, channels: Int) {
        self.contextLength = contextLength
        self.vocabularySize = vocabularySize
        self.layers = layers
        self.heads = heads
        self.channels = channels
    }

    /// Checks that the shape can be built; the message names the flag to change.
    public func validate() throws {
        for (flag, value) in [("--seq-len", contextLength), ("--vocab-size", vocabularySize), ("--layers", layers),
                              ("--heads", heads), ("--embd", channels)] where value < 1 {
            throw BatonError("\(flag) must be at least 1, got \(value)")
        }
        // Upper bounds keep every size product far from overflow, whatever a file claims.
        for (flag, value, limit) in [("--seq-len", contextLength, 65536), ("--layers", layers, 1024), ("--heads", heads, 1024),
                                     ("--embd", channels, 65536)] where value > limit {
            throw BatonError("\(flag) \(value) is larger than Baton supports (\(limit))")
        }
        if channels % heads != 0 {
            throw BatonError("--embd \(channels) is not divisible by --heads \(heads)")
        }
        if vocabularySize > 65536 {
            throw BatonError("--vocab-size \(vocabularySize) is larger than token shards can hold (65536)")
        }
    }
}
