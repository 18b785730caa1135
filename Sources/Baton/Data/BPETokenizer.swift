import Foundation

/// A byte-level BPE tokenizer: GPT-2's (vocab.json + merges.txt) or a Hugging Face tokenizer.json
/// of the kind Llama 3, Qwen2 and SmolLM ship. Encoding is Hugging Face's, step by step: added
/// tokens are found in the text, the text between them is normalized (NFC, where the file says so)
/// and cut into pieces by the pre-tokenizer, and each piece's bytes are merged (BytePairEncoder).
///
/// Special-token text is ordinary text unless `specialTokens: .matched` is asked for: `baton
/// prepare` and `baton sample` never make a special token out of text, as tiktoken's
/// `encode_ordinary` and llm.c's data scripts do not; documents are separated by prepare, which
/// puts the tokenizer's own token between them (`documentSeparator`). Added tokens that are not
/// special are matched always, as Hugging Face matches them.
public final class BPETokenizer {
    /// Which files a tokenizer folder's tokenizer is read from. A folder with tokenizer.json is read
    /// from it (as Hugging Face's fast tokenizer is), whatever else is there.
    public enum Kind: String, Sendable {
        case gpt2
        case tokenizerJSON = "tokenizer.json"

        /// The files of the folder this kind reads (and a dataset copies).
        public var files: [String] {
            switch self {
            case .gpt2: return ["vocab.json", "merges.txt"]
            case .tokenizerJSON: return ["tokenizer.json", "tokenizer_config.json"]
            }
        }

        /// Every file a dataset's tokenizer/ copy may hold.
        public static let allFiles = Set(Kind.gpt2.files + Kind.tokenizerJSON.files)
    }

    public enum SpecialTokens: Sendable { case asText, matched }

    public let kind: Kind
    public let preTokenizer: PreTokenizer
    /// Token id -> its bytes.
    public var tokenBytes: [[UInt8]] { encoder.tokenBytes }
    public var vocabularySize: Int { encoder.tokenBytes.count }
    /// The beginning and end of text the tokenizer declares (nil where it declares none), and
    /// whether it puts the beginning before every text (Llama 3's post_processor does).
    public let beginOfText: Int32?, endOfText: Int32?
    public let addsBeginOfText: Bool
    let normalizesNFC: Bool
    /// Added tokens matched in the raw text (`"normalized": false`), and those matched in the
    /// normalized text between them (`"normalized": true`, their content normalized too).
    let rawTokens: AddedTokens, normalizedTokens: AddedTokens
    private let encoder: BytePairEncoder
    /// Copies of this tokenizer for threads, kept between calls so their caches stay warm (a
    /// prepare encodes block after block); taken under the lock, so concurrent calls never share one.
    private var idleWorkers: [BPETokenizer] = []
    private let workersLock = NSLock()

    /// The token `baton prepare` puts before every document: the beginning of text where the
    /// tokenizer adds it to every text, else its end of text (as GPT-2's <|endoftext|> in llm.c's shards).
    public var documentSeparator: Int32? { addsBeginOfText ? beginOfText : endOfText }

    /// The tokens that end a document in prepared data (`baton sample --stop-at-eot`).
    public var endsOfDocument: Set<Int32> { Set([documentSeparator, endOfText].compactMap { $0 }) }

    init(
        kind: Kind, preTokenizer: PreTokenizer, normalizesNFC: Bool = false, rawTokens: AddedTokens = AddedTokens(),
        normalizedTokens: AddedTokens = AddedTokens(), encoder: BytePairEncoder, beginOfText: Int32?,
        endOfText: Int32?, addsBeginOfText: Bool
    ) {
        self.kind = kind
        self.preTokenizer = preTokenizer
        self.normalizesNFC = normalizesNFC
        self.rawTokens = rawTokens
        self.normalizedTokens = normalizedTokens
        self.encoder = encoder
        self.beginOfText = beginOfText
        self.endOfText = endOfText
        self.addsBeginOfText = addsBeginOfText
    }

    /// The same tokenizer with caches of its own, for another thread.
    private convenience init(sharing other: BPETokenizer) {
        self.init(
            kind: other.kind, preTokenizer: other.preTokenizer, normalizesNFC: other.normalizesNFC,
            rawTokens: other.rawTokens, normalizedTokens: other.normalizedTokens,
            encoder: BytePairEncoder(sharing: other.encoder),
            beginOfText: other.beginOfText, endOfText: other.endOfText, addsBeginOfText: other.addsBeginOfText)
    }

    /// The tokenizer of a folder: its tokenizer.json (with tokenizer_config.json when present), else
    /// GPT-2's vocab.json and merges.txt.
    public convenience init(folder: URL) throws {
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent("tokenizer.json").path) {
            try self.init(huggingFaceFolder: folder)
        } else {
            try self.init(gpt2Folder: folder)
        }
    }

    // MARK: encoding

    public func encode(_ text: String, specialTokens: SpecialTokens = .asText) -> [Int32] {
        var tokens: [Int32] = []
        tokens.reserveCapacity(text.utf8.count / 3)
        var utf8 = Array(text.utf8)
        utf8.withUnsafeMutableBufferPointer { encode(UnsafeBufferPointer($0), specialTokens, into: &tokens) }
        return tokens
    }

    /// Encodes on `threads` threads, the same tokens as one pass (see encode(documents:threads:)).
    public func encode(_ text: String, threads: Int, specialTokens: SpecialTokens = .asText) -> [Int32] {
        encode(documents: [text], threads: threads, specialTokens: specialTokens)[0]
    }

    /// Encodes each document on `threads` threads: documents longer than a thread's share are cut
    /// where a piece always ends (isSafeCut), the chunks of all of them go to copies of this
    /// tokenizer (each with its own cache), and each document's tokens are joined in order: the
    /// same tokens as one pass over each. Many short documents and one long one use every thread alike.
    public func encode(documents: [String], threads: Int, specialTokens: SpecialTokens = .asText) -> [[Int32]] {
        let texts = documents.map { Array($0.utf8) }
        let total = texts.reduce(0) { $0 + $1.count }
        // Chunks of at least 4 KiB, about 8 a thread; a text of less than 64 KiB is one pass.
        guard threads > 1, total > 1 << 16 else {
            return documents.map { encode($0, specialTokens: specialTokens) }
        }
        let share = max(4096, total / (threads * 8))
        var chunks: [(text: Int, start: Int, end: Int)] = []
        for (index, text) in texts.enumerated() {
            var start = 0
            text.withUnsafeBufferPointer { buffer in
                while text.count - start > share {
                    var cut = start + share
                    while cut < text.count && !isSafeCut(buffer, at: cut) { cut += 1 }
                    guard cut < text.count else { break }  // no safe cut left: the rest is one chunk
                    chunks.append((index, start, cut))
                    start = cut
                }
            }
            chunks.append((index, start, text.count))
        }
        let parts = inParallel(count: chunks.count, threads: threads) { worker, k in
            var tokens: [Int32] = []
            texts[chunks[k].text].withUnsafeBufferPointer { buffer in
                worker.encode(
                    UnsafeBufferPointer(rebasing: buffer[chunks[k].start..<chunks[k].end]), specialTokens, into: &tokens
                )
            }
            return tokens
        }
        var result = [[Int32]](repeating: [], count: documents.count)
        for (k, chunk) in chunks.enumerated() { result[chunk.text] += parts[k] }
        return result
    }

    /// `body(worker, k)` for k in 0..<count on `threads` threads, each with its own copy of this
    /// tokenizer; the results in order.
    private func inParallel(
        count: Int, threads: Int, _ body: (BPETokenizer, Int) -> [Int32]
    ) -> [[Int32]] {
        let threads = min(threads, count)
        workersLock.lock()
        let kept = idleWorkers.suffix(threads)
        idleWorkers.removeLast(kept.count)
        workersLock.unlock()
        nonisolated(unsafe) let workers = Array(kept) + (kept.count..<threads).map { _ in BPETokenizer(sharing: self) }
        defer {
            workersLock.lock()
            idleWorkers += workers
            workersLock.unlock()
        }
        final class Results: @unchecked Sendable { var parts: [[Int32]] = [] }
        let results = Results()
        results.parts = Array(repeating: [], count: count)
        let next = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        next.initialize(to: 0)
        defer { next.deallocate() }
        let lock = NSLock()
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let body = body, next = next
            DispatchQueue.concurrentPerform(iterations: threads) { worker in
                while true {
                    lock.lock(); let k = next.pointee; next.pointee += 1; lock.unlock()
                    guard k < count else { return }
                    let tokens = body(workers[worker], k)
                    lock.lock(); results.parts[k] = tokens; lock.unlock()
                }
            }
        }
        return results.parts
    }

    /// Hugging Face's order: added tokens that match the raw text; then, between them, the text
    /// normalized, the added tokens that match the normalized text, and between those the pieces.
    private func encode(_ text: UnsafeBufferPointer<UInt8>, _ specials: SpecialTokens, into tokens: inout [Int32]) {
        let asText = specials == .asText
        rawTokens.split(text, specialsAsText: asText, token: { tokens.append($0) }) { raw in
            normalized(raw) { text in
                normalizedTokens.split(text, specialsAsText: asText, token: { tokens.append($0) }) { text in
                    preTokenizer.forEachPiece(text) { encoder.append($0, to: &tokens) }
                }
            }
        }
    }

    /// Calls `body` with `text` normalized (as it is where nothing changes it).
    private func normalized(_ text: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        guard normalizesNFC, !NFCNormalizer.isInert(text) else { return body(text) }
        var normalized: [UInt8] = []
        normalized.reserveCapacity(text.count)
        NFCNormalizer.normalize(text, into: &normalized)
        normalized.withUnsafeBufferPointer { body($0) }
    }

    /// Whether cutting the text just before byte `i` leaves its tokens as they are: a cut the
    /// pre-tokenizer allows, and no added token holds a newline (one could span the cut).
    func isSafeCut(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> Bool {
        !rawTokens.holdsNewline && !normalizedTokens.holdsNewline && preTokenizer.isSafeCut(bytes, at: i)
    }

    /// The last safe cut in `bytes`, or 0 when there is none.
    public func lastSafeCut(in bytes: [UInt8]) -> Int {
        bytes.withUnsafeBufferPointer { buffer in
            var i = buffer.count - 1
            while i > 0 && !isSafeCut(buffer, at: i) { i -= 1 }
            return max(i, 0)
        }
    }

    public func decode(_ tokens: [Int32]) -> String {
        var bytes: [UInt8] = []
        for token in tokens where token >= 0 && Int(token) < vocabularySize { bytes += encoder.tokenBytes[Int(token)] }
        return String(decoding: bytes, as: UTF8.self)
    }
}
