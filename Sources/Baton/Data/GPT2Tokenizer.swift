import Foundation

/// GPT-2's byte-level BPE, byte-exact with tiktoken's `r50k_base` and Hugging Face's GPT-2
/// tokenizer: text is cut into pieces by GPT-2's pre-tokenisation pattern
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// (written out by hand below, scalar by scalar), each piece's UTF-8 bytes are merged by rank,
/// and every piece's tokens are cached. `<|endoftext|>` (50256) is never produced from text: a
/// literal "<|endoftext|>" inside a document is ordinary text, as in tiktoken's
/// `encode_ordinary` and llm.c's data scripts; documents are separated by `baton prepare`, which
/// puts the token itself before each one.
public final class GPT2Tokenizer {
    public static let endOfText: Int32 = 50256
    public static let endOfTextText = "<|endoftext|>"

    /// Token id -> its bytes.
    public let tokenBytes: [[UInt8]]
    public var vocabularySize: Int { tokenBytes.count }
    /// The id vocab.json gives `<|endoftext|>`, or nil where it has none (GPT-2's: 50256).
    public let endOfTextID: Int32?
    /// The 256 single-byte tokens, by byte value.
    private let byteTokens: [Int32]
    /// (left id << 32 | right id) -> (rank, merged id).
    private let merges: [UInt64: (rank: Int32, merged: Int32)]
    /// Tokens of pieces seen before: pieces of up to 7 bytes (most of them) keyed by the bytes
    /// packed into an integer, so a lookup allocates nothing; longer ones by their bytes.
    private var shortCache: [UInt64: [Int32]] = [:]
    private var cache: [[UInt8]: [Int32]] = [:]

    /// Reads a Hugging Face tokenizer folder's `vocab.json` and `merges.txt`.
    public convenience init(folder: URL) throws {
        let vocabURL = folder.appendingPathComponent("vocab.json"),
            mergesURL = folder.appendingPathComponent("merges.txt")
        for url in [vocabURL, mergesURL] where !FileManager.default.fileExists(atPath: url.path) {
            throw BatonError(
                "\(folder.path): no \(url.lastPathComponent); a GPT-2 tokenizer folder holds vocab.json and merges.txt")
        }
        guard let vocabData = FileManager.default.contents(atPath: vocabURL.path),
            let mergesData = FileManager.default.contents(atPath: mergesURL.path)
        else {
            throw BatonError("\(folder.path): cannot read vocab.json or merges.txt")
        }
        try self.init(vocabJSON: vocabData, merges: mergesData, vocabPath: vocabURL.path, mergesPath: mergesURL.path)
    }

    public init(
        vocabJSON: Data, merges mergesText: Data, vocabPath: String = "vocab.json", mergesPath: String = "merges.txt"
    ) throws {
        guard let object = try? JSONSerialization.jsonObject(with: vocabJSON), let vocab = object as? [String: Int]
        else {
            throw BatonError("\(vocabPath): not a JSON object of token strings to ids")
        }
        let unicodeToByte = GPT2Tokenizer.unicodeToByte
        var bytes = [[UInt8]?](repeating: nil, count: vocab.count)
        for (symbol, id) in vocab {
            guard id >= 0, id < vocab.count else {
                throw BatonError("\(vocabPath): id \(id) of \(symbol.debugDescription) is outside 0..<\(vocab.count)")
            }
            guard bytes[id] == nil else { throw BatonError("\(vocabPath): id \(id) is given to two tokens") }
            if symbol == GPT2Tokenizer.endOfTextText { bytes[id] = Array(symbol.utf8); continue }
            var tokenBytes: [UInt8] = []
            for scalar in symbol.unicodeScalars {
                guard let byte = unicodeToByte[scalar] else {
                    throw BatonError("\(vocabPath): token \(symbol.debugDescription) is not in GPT-2's byte alphabet")
                }
                tokenBytes.append(byte)
            }
            bytes[id] = tokenBytes
        }
        tokenBytes = bytes.map { $0 ?? [] }
        endOfTextID = vocab[GPT2Tokenizer.endOfTextText].map(Int32.init)
        var byBytes: [[UInt8]: Int32] = [:]
        for (id, b) in tokenBytes.enumerated() { byBytes[b] = Int32(id) }
        var singles = [Int32](repeating: -1, count: 256)
        for byte in 0..<256 {
            guard let id = byBytes[[UInt8(byte)]] else { throw BatonError("\(vocabPath): no token for byte \(byte)") }
            singles[byte] = id
        }
        byteTokens = singles
        var table: [UInt64: (rank: Int32, merged: Int32)] = [:]
        let lines = String(decoding: mergesText, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        var rank: Int32 = 0
        for (index, line) in lines.enumerated() {
            if line.isEmpty || (index == 0 && line.hasPrefix("#version")) { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, let left = vocab[String(parts[0])], let right = vocab[String(parts[1])],
                let merged = vocab[String(parts[0]) + String(parts[1])]
            else {
                throw BatonError(
                    "\(mergesPath): line \(index + 1) is not a merge of two known tokens: "
                        + "\(line.prefix(60).debugDescription)"
                )
            }
            let key = UInt64(left) << 32 | UInt64(right)
            if table[key] == nil { table[key] = (rank, Int32(merged)) }
            rank += 1
        }
        merges = table
    }

    private init(sharing other: GPT2Tokenizer) {
        tokenBytes = other.tokenBytes
        endOfTextID = other.endOfTextID
        byteTokens = other.byteTokens
        merges = other.merges
    }

    /// Encodes on `threads` threads: the text is cut before newlines that follow a non-space
    /// (where a piece always ends, so the pieces are the same as in one pass), the chunks go to
    /// copies of this tokenizer (each with its own cache), and the tokens are joined in order.
    public func encode(_ text: String, threads: Int) -> [Int32] {
        let utf8 = Array(text.utf8)
        // Chunks of at least 4 KiB, and no more threads than chunks: more would only copy tokenizers.
        let chunkCount = max(1, min(threads * 8, utf8.count / 4096))
        let threads = min(threads, chunkCount)
        guard threads > 1, utf8.count > 1 << 16 else { return encode(text) }
        var bounds = [0]
        let step = utf8.count / chunkCount
        for k in 1..<chunkCount {
            var i = max(k * step, bounds.last! + 1)
            while i < utf8.count && !GPT2Tokenizer.isSafeCut(utf8, at: i) { i += 1 }
            guard i < utf8.count else { break }  // no safe cut left: the rest is one chunk
            bounds.append(i)
        }
        bounds.append(utf8.count)
        let chunks = bounds.count - 1
        nonisolated(unsafe) let workers = (0..<threads).map { _ in GPT2Tokenizer(sharing: self) }
        let starts = bounds
        final class Results: @unchecked Sendable { var parts: [[Int32]] = [] }
        let results = Results()
        results.parts = Array(repeating: [], count: chunks)
        let next = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        next.initialize(to: 0)
        let lock = NSLock()
        defer { next.deallocate() }
        utf8.withUnsafeBufferPointer { buffer in
            nonisolated(unsafe) let buffer = buffer, next = next
            DispatchQueue.concurrentPerform(iterations: threads) { worker in
                while true {
                    lock.lock(); let chunk = next.pointee; next.pointee += 1; lock.unlock()
                    guard chunk < chunks else { return }
                    var tokens: [Int32] = []
                    GPT2Tokenizer.forEachPiece(UnsafeBufferPointer(rebasing: buffer[starts[chunk]..<starts[chunk + 1]]))
                    { workers[worker].append($0, to: &tokens) }
                    lock.lock(); results.parts[chunk] = tokens; lock.unlock()
                }
            }
        }
        return results.parts.flatMap { $0 }
    }

    /// Whether cutting `bytes` just before `i` leaves the pieces as they are: `i` is a newline that
    /// follows an ASCII non-space, where a piece always ends. Both the threaded encoder and
    /// `prepare`'s block reader cut only there.
    static func isSafeCut(_ bytes: [UInt8], at i: Int) -> Bool {
        i > 0 && bytes[i] == 0x0A && bytes[i - 1] < 0x80 && asciiClass[Int(bytes[i - 1])] != .space
    }

    /// The last safe cut in `bytes` (see isSafeCut), or 0 when there is none.
    static func lastSafeCut(in bytes: [UInt8]) -> Int {
        var i = bytes.count - 1
        while i > 0 && !isSafeCut(bytes, at: i) { i -= 1 }
        return max(i, 0)
    }

    /// The tokenizer shipped in `data/gpt2-tokenizer/` (from the working directory, or beside
    /// the executable's repository).
    public static func bundled() throws -> GPT2Tokenizer {
        try GPT2Tokenizer(folder: bundledFolder())
    }

    public static func bundledFolder() throws -> URL {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var candidates = [URL(fileURLWithPath: "data/gpt2-tokenizer")]
        var folder = executable.deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(folder.appendingPathComponent("data/gpt2-tokenizer"))
            folder = folder.deletingLastPathComponent()
        }
        guard
            let found = candidates.first(where: {
                FileManager.default.fileExists(atPath: $0.appendingPathComponent("vocab.json").path)
            })
        else {
            throw BatonError(
                "--tokenizer gpt2: data/gpt2-tokenizer (vocab.json, merges.txt) is not here; run from the "
                    + "repository root or pass --tokenizer DIR"
            )
        }
        return found
    }

    // MARK: encoding

    public func encode(_ text: String) -> [Int32] {
        var tokens: [Int32] = []
        tokens.reserveCapacity(text.utf8.count / 3)
        var utf8 = Array(text.utf8)
        utf8.withUnsafeMutableBufferPointer { buffer in
            GPT2Tokenizer.forEachPiece(UnsafeBufferPointer(buffer)) { piece in append(piece, to: &tokens) }
        }
        return tokens
    }

    public func decode(_ tokens: [Int32]) -> String {
        var bytes: [UInt8] = []
        for token in tokens where token >= 0 && Int(token) < tokenBytes.count { bytes += tokenBytes[Int(token)] }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// BPE of one piece, from the cache or merged by rank.
    private func append(_ piece: UnsafeBufferPointer<UInt8>, to tokens: inout [Int32]) {
        if piece.count == 1 { tokens.append(byteTokens[Int(piece[0])]); return }
        var packed = UInt64(piece.count) << 56
        if piece.count <= 7 {
            for (k, byte) in piece.enumerated() { packed |= UInt64(byte) << (8 * k) }
            if let cached = shortCache[packed] { tokens += cached; return }
        } else if let cached = cache[Array(piece)] {
            tokens += cached; return
        }
        var parts = piece.map { byteTokens[Int($0)] }
        while parts.count > 1 {
            var best: (rank: Int32, merged: Int32, at: Int)?
            for i in 0..<(parts.count - 1) {
                if let merge = merges[
                    UInt64(UInt32(bitPattern: parts[i])) << 32 | UInt64(UInt32(bitPattern: parts[i + 1]))],
                    best == nil || merge.rank < best!.rank
                {
                    best = (merge.rank, merge.merged, i)
                }
            }
            guard let best else { break }
            // Merge every occurrence of the best pair, left to right (as the reference does).
            let left = parts[best.at], right = parts[best.at + 1]
            var merged: [Int32] = []
            merged.reserveCapacity(parts.count)
            var i = 0
            while i < parts.count {
                if i + 1 < parts.count && parts[i] == left && parts[i + 1] == right {
                    merged.append(best.merged)
                    i += 2
                } else {
                    merged.append(parts[i])
                    i += 1
                }
            }
            parts = merged
        }
        if piece.count <= 7 {
            if shortCache.count < 1 << 20 { shortCache[packed] = parts }
        } else if cache.count < 1 << 20 {
            cache[Array(piece)] = parts
        }
        tokens += parts
    }

    // MARK: pre-tokenisation

    enum CharacterClass { case letter, number, space, other }

    /// Calls `body` with each piece of GPT-2's pre-tokenisation of valid UTF-8 `text`, in order.
    static func forEachPiece(_ text: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        let end = text.count
        // Scalar at byte offset i: its class and its UTF-8 length.
        func scalar(at i: Int) -> (CharacterClass, Int, UInt32) {
            let b0 = text[i]
            if b0 < 0x80 { return (asciiClass[Int(b0)], 1, UInt32(b0)) }
            let length = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2
            var value = UInt32(b0) & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
            for k in 1..<length where i + k < end { value = value << 6 | (UInt32(text[i + k]) & 0x3F) }
            return (classify(value), min(length, end - i), value)
        }
        func run(from start: Int, while wanted: CharacterClass) -> Int {
            var j = start
            while j < end {
                let (c, n, _) = scalar(at: j)
                if c != wanted { break }
                j += n
            }
            return j
        }
        func emit(_ from: Int, _ to: Int) { body(UnsafeBufferPointer(rebasing: text[from..<to])) }
        var i = 0
        while i < end {
            let (c, n, value) = scalar(at: i)
            // 's 't 're 've 'm 'll 'd (lower case only, as the pattern is written)
            if value == 0x27, i + 1 < end {
                let a = text[i + 1], b: UInt8 = i + 2 < end ? text[i + 2] : 0
                var length = 0
                if a == UInt8(ascii: "s") || a == UInt8(ascii: "t") || a == UInt8(ascii: "m") || a == UInt8(ascii: "d")
                {
                    length = 2
                } else if (a == UInt8(ascii: "r") || a == UInt8(ascii: "v")) && b == UInt8(ascii: "e") {
                    length = 3
                } else if a == UInt8(ascii: "l") && b == UInt8(ascii: "l") {
                    length = 3
                }
                if length > 0 { emit(i, i + length); i += length; continue }
            }
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: a space joins the run after it.
            var start = i, cls = c, runStart = i
            if value == 0x20, i + 1 < end {
                let next = scalar(at: i + 1).0
                if next != .space { cls = next; runStart = i + 1 }
            }
            if cls != .space {
                let stop = run(from: runStart, while: cls)
                emit(start, stop)
                i = stop
                continue
            }
            // `\s+(?!\S)|\s+`: a whitespace run, less its last character when text follows it.
            start = i
            let stop = run(from: i + n, while: .space)
            if stop < end && stop - start > n {
                // Leave the run's last scalar for the piece after it.
                var last = start
                var j = start
                while j < stop { last = j; j += scalar(at: j).1 }
                emit(start, last)
                i = last
            } else {
                emit(start, stop)
                i = stop
            }
        }
    }

    static let asciiClass: [CharacterClass] = (0..<128).map { classify(UInt32($0)) }

    static func classify(_ value: UInt32) -> CharacterClass {
        guard let scalar = Unicode.Scalar(value) else { return .other }
        let properties = scalar.properties
        if properties.isWhitespace { return .space }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// GPT-2's printable stand-in for each byte (bytes_to_unicode), inverted.
    static let unicodeToByte: [Unicode.Scalar: UInt8] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var mapping: [Unicode.Scalar: UInt8] = [:]
        for byte in printable { mapping[Unicode.Scalar(UInt32(byte))!] = UInt8(byte) }
        var extra: UInt32 = 0
        for byte in 0..<256 where !printable.contains(byte) {
            mapping[Unicode.Scalar(256 + extra)!] = UInt8(byte)
            extra += 1
        }
        printable.removeAll()
        return mapping
    }()
}
