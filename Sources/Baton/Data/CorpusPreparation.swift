import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `baton prepare --tokenizer gpt2|DIR`: text and JSONL files -> BPE token shards in llm.c's
/// formats, streamed (memory is one shard of tokens plus one read block, whatever the input size).
/// A `.txt` file is one document; a `.jsonl` file is one document a line (its "text" field, or
/// another). Each document is preceded by the tokenizer's document separator (GPT-2's
/// `<|endoftext|>`, as llm.c's shards are; Llama 3's `<|begin_of_text|>`, which it puts before every
/// text; else the end of text the tokenizer declares), and special-token text inside a document is
/// ordinary text (see BPETokenizer). Tokens are uint16 where the vocabulary fits, else uint32 in
/// llm.c's Llama 3 format (TokenShard.Format). The first
/// `valTokens` tokens (default: a tenth of them, at most one shard; see ShardSequence) go to
/// NAME_val_NNNNNN.bin, the rest to NAME_train_NNNNNN.bin shards of `shardTokens` tokens. The
/// whole dataset is written into a temporary folder beside the output folder and swapped in at
/// the end (DatasetFolder): an error or a kill leaves the output folder as it was.
/// `dataset.json` records the tokenizer (its files copied beside the shards), its separator and
/// every shard's name, token count and CRC-32C, which `train` checks the shards against.
public struct CorpusPreparation {
    public struct Options {
        public var name = "corpus"
        public var field = "text"
        public var shardTokens = 100_000_000
        public var valTokens: Int?
        public var threads = 0
        /// Replace an output folder that already holds a dataset.
        public var overwrite = false
        /// Bytes read at a time (tests make it small to cut documents into many blocks).
        public var blockBytes = 8 << 20
        public var progress: ((String) -> Void)?
        public init() {}
    }

    public struct Result {
        public let trainTokens: Int
        public let valTokens: Int
        public let documents: Int
        public let files: [URL]
    }

    let tokenizer: BPETokenizer
    let tokenizerFolder: URL
    let options: Options
    /// The token put before every document.
    let separator: Int32

    public init(tokenizerFolder: URL, options: Options) throws {
        tokenizer = try BPETokenizer(folder: tokenizerFolder)
        guard let separator = tokenizer.documentSeparator else {
            switch tokenizer.kind {
            case .gpt2:
                throw BatonError(
                    "\(tokenizerFolder.path): vocab.json has no \(GPT2Tokenizer.endOfTextText) token; baton prepare "
                        + "puts it before every document: use a GPT-2 tokenizer folder that has it"
                )
            case .tokenizerJSON:
                throw BatonError(
                    "\(tokenizerFolder.appendingPathComponent("tokenizer.json").path): declares no end-of-text token "
                        + "(no eos_token in tokenizer_config.json, none in its post_processor, no special "
                        + "<|endoftext|>); baton prepare puts one before every document: add a tokenizer_config.json "
                        + "with \"eos_token\""
                )
            }
        }
        self.separator = separator
        self.tokenizerFolder = tokenizerFolder
        self.options = options
    }

    /// The file that tells train, eval and sample which tokenizer made a data folder.
    public static let datasetFile = "dataset.json"

    public func prepare(files: [URL], outputFolder: URL) throws -> Result {
        guard options.shardTokens >= 1024, options.shardTokens <= Int(Int32.max) else {
            throw BatonError.invalidFlag(
                flag: "--shard-tokens",
                message: "--shard-tokens must be between 1024 and \(Int32.max), got \(options.shardTokens)")
        }
        if let val = options.valTokens, val < 1 {
            throw BatonError.invalidFlag(flag: "--val-tokens", message: "--val-tokens must be at least 1, got \(val)")
        }
        try PrepareInputs.check(files)
        let dataset = try DatasetFolder(out: outputFolder, overwrite: options.overwrite)
        switch TokenShard.Format.forVocabulary(tokenizer.vocabularySize) {
        case .uint16: return try prepare(files: files, into: dataset, as: UInt16.self)
        case .uint32, .masked: return try prepare(files: files, into: dataset, as: UInt32.self)
        }
    }

    private func prepare<Token: FixedWidthInteger & UnsignedInteger>(
        files: [URL], into dataset: DatasetFolder, as _: Token.Type
    ) throws -> Result {
        let writer = ShardSequence<Token>(
            folder: dataset.temporary, name: options.name, shardTokens: options.shardTokens,
            valTokens: options.valTokens)
        do {
            let totalBytes = files.reduce(0) {
                $0 + ((try? FileManager.default.attributesOfItem(atPath: $1.path)[.size] as? Int) ?? 0)
            }
            var readBytes = 0, documents = 0
            let start = monotonicSeconds()
            var lastReport = start
            for file in files {
                let jsonl = file.pathExtension.lowercased() == "jsonl"
                try forEachBlock(of: file, jsonl: jsonl) { block, documentsStart, bytes in
                    let encoded = try encode(block, jsonl: jsonl, file: file, firstLine: documentsStart)
                    for document in encoded {
                        if document.startsDocument { try writer.append([separator]); documents += 1 }
                        try writer.append(document.tokens)
                    }
                    readBytes += bytes
                    let now = monotonicSeconds()
                    if now - lastReport >= 2, let progress = options.progress {
                        lastReport = now
                        let rate = Double(readBytes) / (now - start)
                        let eta = rate > 0 ? Double(totalBytes - readBytes) / rate : 0
                        progress(
                            String(
                                format: "prepare: %.1f of %.1f MB | %.1f MB/s | %d tokens | ETA %@",
                                Double(readBytes) / 1e6,
                                Double(totalBytes) / 1e6, rate / 1e6, writer.total, formatDuration(eta)))
                    }
                }
            }
            try writer.finish()
            guard writer.total > 0 else { throw BatonError("\(files[0].path): no text to tokenize") }
            guard writer.trainTokens > 0 else {
                throw BatonError(
                    "\(files[0].path): all \(writer.total) tokens went to validation; give more text or a smaller "
                        + "--val-tokens"
                )
            }
            try CorpusPreparation.writeDatasetRecord(
                to: dataset.temporary, tokenizer: tokenizer, tokenizerFolder: tokenizerFolder, separator: separator,
                shards: writer.shards.map { ($0.name, $0.tokens, $0.crc32c) },
                format: Token.bitWidth == 16 ? .uint16 : .uint32)
            try dataset.commit(overwrite: options.overwrite)
            return Result(
                trainTokens: writer.trainTokens, valTokens: writer.valTokensWritten, documents: documents,
                files: writer.shards.map { dataset.target.appendingPathComponent($0.name) })
        } catch {
            dataset.abandon()
            throw error
        }
    }

    /// One document's tokens, or the continuation of a long `.txt` document.
    struct Encoded { let startsDocument: Bool; let tokens: [Int32] }

    private func encode(_ block: [UInt8], jsonl: Bool, file: URL, firstLine: Int) throws -> [Encoded] {
        let threads = options.threads > 0 ? options.threads : ProcessInfo.processInfo.activeProcessorCount
        if !jsonl {
            try checkUTF8(block, file: file, offset: firstLine)
            return [
                Encoded(
                    startsDocument: firstLine == 0,
                    tokens: tokenizer.encode(String(decoding: block, as: UTF8.self), threads: threads))
            ]
        }
        var texts: [String] = []
        var lineNumber = firstLine
        for line in block.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
            if CorpusPreparation.firstInvalidUTF8(line) != nil {
                throw BatonError("\(file.path): line \(lineNumber) is not valid UTF-8; convert the file to UTF-8 first")
            }
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                throw BatonError("\(file.path): line \(lineNumber) is not a JSON object")
            }
            guard let text = object[options.field] as? String else {
                throw BatonError(
                    "\(file.path): line \(lineNumber) has no string field \"\(options.field)\" (pass --field NAME "
                        + "for another)"
                )
            }
            texts.append(text)
        }
        // The block's documents on every thread at once (a long one cut into chunks).
        return tokenizer.encode(documents: texts, threads: threads).map { Encoded(startsDocument: true, tokens: $0) }
    }

    /// Reads a file in blocks of about 8 MB. A `.txt` block ends at a newline where a piece always
    /// ends (BPETokenizer.isSafeCut, so blocks tokenize as the whole file would); a `.jsonl` block
    /// ends after a newline. `body` gets the block, the number of
    /// bytes (txt) or lines (jsonl) before it, and its size.
    private func forEachBlock(of file: URL, jsonl: Bool, _ body: ([UInt8], Int, Int) throws -> Void) throws {
        guard let handle = FileHandle(forReadingAtPath: file.path) else {
            throw BatonError("\(file.path): cannot read")
        }
        defer { try? handle.close() }
        var pending: [UInt8] = []
        var before = 0, linesBefore = 0, finished = false
        while !finished {
            let chunk = (try? handle.read(upToCount: options.blockBytes)) ?? nil
            if let chunk, !chunk.isEmpty { pending += chunk } else { finished = true }
            guard !pending.isEmpty else { break }
            var cut = pending.count
            if !finished {
                cut = jsonl ? (pending.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0) : tokenizer.lastSafeCut(in: pending)
                if cut <= 0 { continue }  // no boundary yet: read more
            }
            let block = Array(pending[..<cut])
            pending.removeFirst(cut)
            try body(block, jsonl ? linesBefore : before, block.count)
            if jsonl { linesBefore += block.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) } }
            before += block.count
        }
    }

    /// Invalid UTF-8 is refused with its byte offset (nothing is replaced silently).
    private func checkUTF8(_ bytes: [UInt8], file: URL, offset: Int) throws {
        if let position = CorpusPreparation.firstInvalidUTF8(bytes) {
            throw BatonError(
                "\(file.path): not valid UTF-8 at byte offset \(offset + position); convert it to UTF-8 first")
        }
    }

    /// The offset of the first byte that is not valid UTF-8, or nil.
    static func firstInvalidUTF8<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Int? {
        var iterator = bytes.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        var position = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar): position += scalar.count
            case .emptyInput: return nil
            case .error: return position
            }
        }
    }

    /// dataset.json, and the tokenizer's files copied into `tokenizer/`. A GPT-2 dataset's record
    /// is as before; a tokenizer.json one's also names its separator and its shards' token width;
    /// `extra` adds keys (a conversation dataset's chat format).
    static func writeDatasetRecord(
        to folder: URL, tokenizer: BPETokenizer, tokenizerFolder: URL, separator: Int32,
        shards: [(name: String, tokens: Int, crc32c: UInt32)], format: TokenShard.Format, extra: [String: Any] = [:]
    ) throws {
        let copy = folder.appendingPathComponent("tokenizer")
        try? FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
        for name in tokenizer.kind.files
        where tokenizer.kind == .gpt2
            || FileManager.default.fileExists(atPath: tokenizerFolder.appendingPathComponent(name).path)
        {
            let data = try Data(contentsOf: tokenizerFolder.appendingPathComponent(name))
            try AtomicFile.write(data, to: copy.appendingPathComponent(name))
        }
        var record: [String: Any] = [
            "tokenizer": tokenizer.kind.rawValue, "tokenizer_folder": "tokenizer",
            "vocab_size": tokenizer.vocabularySize,
            "end_of_text": Int(tokenizer.endOfText ?? separator), "baton_version": batonVersion,
            "shards": shards.map { ["name": $0.name, "tokens": $0.tokens, "crc32c": Int($0.crc32c)] as [String: Any] },
        ]
        if tokenizer.kind == .tokenizerJSON {
            record["document_separator"] = Int(separator)
            record["token_bytes"] = format.tokenBytes
        }
        record.merge(extra) { _, new in new }
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys]),
            to: folder.appendingPathComponent(CorpusPreparation.datasetFile))
    }
}
