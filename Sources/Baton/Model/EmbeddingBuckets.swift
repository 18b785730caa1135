/// A batch's rows grouped by token, for the token embedding's gradient (llm.c sorts them the same
/// way, on the host, where the tokens come from). With each token's rows listed in row order, a GPU
/// gives every (token, channel) one thread that adds that token's rows in order: the CPU's sums,
/// bit for bit, without atomics and without every thread scanning the whole batch.
public struct EmbeddingBuckets: Equatable {
    /// Row indices grouped by token (tokens ascending), each group in row order.
    public let rows: [Int32]
    /// Group g is rows[starts[g] ..< starts[g + 1]]; one more entry than there are groups.
    public let starts: [Int32]

    public var count: Int { starts.count - 1 }

    /// Every token has a row in an embedding of `vocabularySize` rows, or the error names the first that has not.
    public static func checkInVocabulary(_ tokens: [Int32], vocabularySize: Int) throws {
        if let row = tokens.firstIndex(where: { $0 < 0 || Int($0) >= vocabularySize }) {
            throw BatonError(
                "token \(tokens[row]) at position \(row) of the batch is not below the vocabulary size "
                    + "\(vocabularySize)"
            )
        }
    }

    /// A counting sort over the vocabulary: O(rows + vocabulary), stable. A token outside the
    /// vocabulary is an error (the embedding has no row for it).
    public init(tokens: [Int32], vocabularySize: Int) throws {
        try EmbeddingBuckets.checkInVocabulary(tokens, vocabularySize: vocabularySize)
        var counts = [Int32](repeating: 0, count: vocabularySize + 1)
        for token in tokens { counts[Int(token) + 1] += 1 }
        var starts: [Int32] = [0]
        for token in 0..<vocabularySize {
            counts[token + 1] += counts[token]  // counts[token] is now where the token's group begins
            if counts[token + 1] > counts[token] { starts.append(counts[token + 1]) }
        }
        var rows = [Int32](repeating: 0, count: tokens.count)
        var next = counts
        for (row, token) in tokens.enumerated() {
            rows[Int(next[Int(token)])] = Int32(row)
            next[Int(token)] += 1
        }
        self.rows = rows
        self.starts = starts
    }
}

/// EmbeddingBuckets in a device's memory, for encoderBackward.
public struct DeviceBuckets {
    let rows: TokenTensor
    let starts: TokenTensor
    /// How many groups the last upload holds.
    public internal(set) var count: Int

    /// Room for the buckets of a batch of `rows` rows.
    public init(device: Device, rows: Int) throws {
        self.init(rows: try device.allocate(tokens: max(rows, 1)), starts: try device.allocate(tokens: rows + 1))
    }

    /// Over room already made: `rows` of the batch's row count (at least 1), `starts` one more.
    init(rows: TokenTensor, starts: TokenTensor) {
        self.rows = rows
        self.starts = starts
        self.count = 0
    }

    public mutating func upload(_ buckets: EmbeddingBuckets, on device: Device) throws {
        precondition(
            buckets.rows.count <= rows.count && buckets.starts.count <= starts.count, "buckets larger than their room")
        try device.upload(tokens: buckets.rows, to: rows)
        try device.upload(tokens: buckets.starts, to: starts)
        count = buckets.count
    }
}
