import Foundation

/// The merge step of byte-level BPE, shared by every tokenizer Baton reads (GPT-2's vocab.json and
/// merges.txt, Hugging Face's tokenizer.json): a piece's UTF-8 bytes start as single-byte tokens and
/// the adjacent pair of lowest merge rank is merged, the leftmost on ties, until no pair has a merge
/// (tiktoken's and Hugging Face's rule; a heap keeps long pieces fast). Every piece's tokens are
/// cached. One encoder serves one thread: `init(sharing:)` gives another thread its own caches.
final class BytePairEncoder {
    /// Token id -> its bytes.
    let tokenBytes: [[UInt8]]
    /// The 256 single-byte tokens, by byte value.
    private let byteTokens: [Int32]
    /// (left id << 32 | right id) -> (rank, merged id).
    private let merges: [UInt64: (rank: Int32, merged: Int32)]
    /// Hugging Face's `ignore_merges` (Llama 3): a piece that is itself a token is that token, merges or not.
    private let wholePieces: [[UInt8]: Int32]?
    /// Tokens of pieces seen before: pieces of up to 7 bytes (most of them) keyed by the bytes
    /// packed into an integer, so a lookup allocates nothing; longer ones by their bytes.
    private var shortCache: [UInt64: [Int32]] = [:]
    private var cache: [[UInt8]: [Int32]] = [:]

    /// `pairs` in rank order: the two tokens and the token they merge into; a pair listed twice
    /// keeps its last rank, as Hugging Face's table does. `wholePieces` (ignore_merges): the model's
    /// tokens by their bytes.
    init(
        tokenBytes: [[UInt8]], byteTokens: [Int32], merges pairs: [(left: Int32, right: Int32, merged: Int32)],
        wholePieces: [[UInt8]: Int32]? = nil
    ) {
        self.tokenBytes = tokenBytes
        self.byteTokens = byteTokens
        var table: [UInt64: (rank: Int32, merged: Int32)] = [:]
        table.reserveCapacity(pairs.count)
        for (rank, pair) in pairs.enumerated() {
            table[BytePairEncoder.key(pair.left, pair.right)] = (Int32(rank), pair.merged)
        }
        merges = table
        self.wholePieces = wholePieces
    }

    init(sharing other: BytePairEncoder) {
        tokenBytes = other.tokenBytes
        byteTokens = other.byteTokens
        merges = other.merges
        wholePieces = other.wholePieces
    }

    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    /// Appends the tokens of one piece, from the cache or merged.
    func append(_ piece: UnsafeBufferPointer<UInt8>, to tokens: inout [Int32]) {
        if piece.count == 1 { tokens.append(byteTokens[Int(piece[0])]); return }
        var packed = UInt64(piece.count) << 56
        if piece.count <= 7 {
            for (k, byte) in piece.enumerated() { packed |= UInt64(byte) << (8 * k) }
            if let cached = shortCache[packed] { tokens += cached; return }
        } else if let cached = cache[Array(piece)] {
            tokens += cached; return
        }
        let parts: [Int32]
        if let whole = wholePieces?[Array(piece)] { parts = [whole] } else { parts = merge(piece) }
        if piece.count <= 7 {
            if shortCache.count < 1 << 20 { shortCache[packed] = parts }
        } else if cache.count < 1 << 20 {
            cache[Array(piece)] = parts
        }
        tokens += parts
    }

    /// The piece's bytes merged pair by pair: the pair of lowest rank first, the leftmost of equal
    /// ranks first. Symbols form a linked list; a min-heap holds (rank, position) of candidate pairs,
    /// and an entry whose pair has changed since it was pushed is skipped when popped.
    private func merge(_ piece: UnsafeBufferPointer<UInt8>) -> [Int32] {
        let count = piece.count
        var symbols = piece.map { byteTokens[Int($0)] }
        var next = Array(1...count), previous = Array(-1..<(count - 1))
        var alive = [Bool](repeating: true, count: count)
        var heap = MinHeap()
        func push(_ at: Int) {
            let right = next[at]
            guard right < count, let merge = merges[BytePairEncoder.key(symbols[at], symbols[right])] else { return }
            heap.push(UInt64(UInt32(merge.rank)) << 32 | UInt64(at))
        }
        for at in 0..<(count - 1) { push(at) }
        while let top = heap.pop() {
            let at = Int(top & 0xFFFF_FFFF), rank = Int32(top >> 32)
            let right = next[at]
            guard alive[at], right < count, let merge = merges[BytePairEncoder.key(symbols[at], symbols[right])],
                merge.rank == rank
            else { continue }
            symbols[at] = merge.merged
            alive[right] = false
            next[at] = next[right]
            if next[at] < count { previous[next[at]] = at }
            if previous[at] >= 0 { push(previous[at]) }
            push(at)
        }
        var result: [Int32] = []
        var at = 0
        while at < count { result.append(symbols[at]); at = next[at] }
        return result
    }
}

/// A binary min-heap of UInt64 keys (a merge's rank in the high half, its position in the low).
private struct MinHeap {
    private var items: [UInt64] = []

    mutating func push(_ item: UInt64) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> UInt64? {
        guard let last = items.popLast() else { return nil }
        guard !items.isEmpty else { return last }
        let top = items[0]
        items[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < items.count && items[left] < items[smallest] { smallest = left }
            if right < items.count && items[right] < items[smallest] { smallest = right }
            guard smallest != parent else { return top }
            items.swapAt(parent, smallest)
            parent = smallest
        }
    }
}

/// GPT-2's byte alphabet (bytes_to_unicode): the printable character that stands for each byte in a
/// byte-level vocabulary, and back.
enum ByteAlphabet {
    static let byteToScalar: [Unicode.Scalar] = {
        let printable = Set(Array(33...126) + Array(161...172) + Array(174...255))
        var scalars: [Unicode.Scalar] = []
        var extra: UInt32 = 0
        for byte in 0..<256 {
            if printable.contains(byte) {
                scalars.append(Unicode.Scalar(UInt32(byte))!)
            } else {
                scalars.append(Unicode.Scalar(256 + extra)!)
                extra += 1
            }
        }
        return scalars
    }()

    static let scalarToByte: [Unicode.Scalar: UInt8] = Dictionary(
        uniqueKeysWithValues: byteToScalar.enumerated().map { ($1, UInt8($0)) })

    /// The bytes a vocabulary entry stands for, or nil when a character is not in the alphabet.
    static func bytes(of symbol: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(symbol.unicodeScalars.count)
        for scalar in symbol.unicodeScalars {
            guard let byte = scalarToByte[scalar] else { return nil }
            bytes.append(byte)
        }
        return bytes
    }

    /// The vocabulary entry of a byte string.
    static func symbol(of bytes: [UInt8]) -> String {
        var text = String.UnicodeScalarView()
        for byte in bytes { text.append(byteToScalar[Int(byte)]) }
        return String(text)
    }
}
