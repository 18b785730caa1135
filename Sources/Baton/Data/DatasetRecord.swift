import Foundation

/// A data folder's `dataset.json` (written by `baton prepare --tokenizer gpt2|DIR`): which
/// tokenizer made its shards, so train, eval and sample need not be told. A folder without one
/// holds byte-level (or llm.c's own) shards.
public struct DatasetRecord {
    /// A shard as prepare wrote it: its name, token count and CRC-32C of its tokens.
    public struct Shard { public let name: String; public let tokens: Int; public let crc32c: UInt32? }

    /// "gpt2" (vocab.json and merges.txt) or "tokenizer.json".
    public let tokenizer: String
    public let vocabularySize: Int
    /// The tokenizer's files (vocab.json and merges.txt, or tokenizer.json and tokenizer_config.json),
    /// copied beside the shards.
    public let tokenizerFolder: URL
    /// Every shard of the folder; nil in records written before Baton listed them (nothing to check).
    public let shards: [Shard]?

    public static func read(dataFolder: URL) throws -> DatasetRecord? {
        let url = dataFolder.appendingPathComponent(CorpusPreparation.datasetFile)
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let name = object["tokenizer"] as? String,
            let vocabulary = object["vocab_size"] as? Int, let folder = object["tokenizer_folder"] as? String,
            !folder.contains("..")
        else {
            throw BatonError(
                "\(url.path): not a dataset record (tokenizer, vocab_size, tokenizer_folder); prepare the folder again")
        }
        var shards: [Shard]?
        if let list = object["shards"] {
            let malformed = BatonError(
                "\(url.path): \"shards\" is not a list of {name, tokens, crc32c}; prepare the folder again")
            guard let entries = list as? [[String: Any]] else { throw malformed }
            shards = try entries.map { entry in
                guard let name = entry["name"] as? String, let tokens = entry["tokens"] as? Int else { throw malformed }
                // A shard is a file of the folder itself: a path in its name would lead outside it.
                guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else {
                    throw BatonError(
                        "\(url.path): shard name '\(name)' is not a file name in the folder; prepare the folder again")
                }
                return Shard(
                    name: name, tokens: tokens, crc32c: (entry["crc32c"] as? Int).flatMap { UInt32(exactly: $0) })
            }
        }
        return DatasetRecord(
            tokenizer: name, vocabularySize: vocabulary, tokenizerFolder: dataFolder.appendingPathComponent(folder),
            shards: shards)
    }

    /// The folder's *.bin files must be exactly the shards listed: none missing, none added
    /// (another prepare's, or byte-level ones beside BPE ones). Checked before any is opened.
    public func checkShardNames(in dataFolder: URL) throws {
        guard let shards else { return }
        let record = dataFolder.appendingPathComponent(CorpusPreparation.datasetFile).path
        let present = Set(
            ((try? FileManager.default.contentsOfDirectory(atPath: dataFolder.path)) ?? []).filter {
                $0.hasSuffix(".bin")
            })
        let listed = Set(shards.map(\.name))
        if let extra = present.subtracting(listed).sorted().first {
            throw BatonError(
                "\(dataFolder.appendingPathComponent(extra).path): not among the \(shards.count) shards \(record) "
                    + "lists, so not written with them; move it out or prepare the folder again"
            )
        }
        if let missing = shards.first(where: { !present.contains($0.name) }) {
            throw BatonError(
                "\(dataFolder.appendingPathComponent(missing.name).path): missing, though \(record) lists it; "
                    + "restore it or prepare the folder again"
            )
        }
    }

    /// Each opened shard must hold the token count and tokens (CRC-32C) the record gives it.
    public func checkShards(_ opened: [TokenShard], in dataFolder: URL) throws {
        guard let shards else { return }
        let record = dataFolder.appendingPathComponent(CorpusPreparation.datasetFile).path
        let byName = Dictionary(shards.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for shard in opened {
            guard let entry = byName[shard.url.lastPathComponent] else { continue }
            if shard.tokenCount != entry.tokens {
                throw BatonError(
                    "\(shard.url.path): \(shard.tokenCount) tokens, but \(record) says \(entry.tokens); restore it "
                        + "or prepare the folder again"
                )
            }
            if let crc = entry.crc32c, crc != shard.contentDigest {
                throw BatonError(
                    "\(shard.url.path): its tokens differ from those \(record) records (CRC-32C); restore it or "
                        + "prepare the folder again"
                )
            }
        }
    }
}

/// The tokenizer a model's text goes through: bytes, or byte-level BPE (GPT-2's, or a tokenizer.json).
public enum TextTokenizer {
    case bytes
    case bpe(BPETokenizer)

    /// `--tokenizer bytes|gpt2|DIR`.
    public static func named(_ name: String) throws -> TextTokenizer {
        switch name {
        case "bytes": return .bytes
        case "gpt2": return .bpe(try GPT2Tokenizer.bundled())
        default: return .bpe(try BPETokenizer(folder: URL(fileURLWithPath: name)))
        }
    }

    /// The tokenizer a checkpoint's text went through (ModelWeights.tokenizerFolder: its data's,
    /// or its Hugging Face source's), else the one its vocabulary implies: 256 is bytes, 50257 GPT-2's.
    public static func forModel(vocabularySize: Int, tokenizerFolder: URL?) throws -> TextTokenizer {
        if let tokenizerFolder { return .bpe(try BPETokenizer(folder: tokenizerFolder)) }
        switch vocabularySize {
        case ByteTokenizer.vocabularySize: return .bytes
        case 50257: return .bpe(try GPT2Tokenizer.bundled())
        default:
            throw BatonError(
                "vocabulary \(vocabularySize) is neither bytes (256) nor GPT-2 (50257), and the data folder records "
                    + "no tokenizer; pass --tokenizer DIR"
            )
        }
    }

    public func encode(_ text: String) -> [Int32] {
        switch self {
        case .bytes: return ByteTokenizer.encode(text)
        case .bpe(let tokenizer): return tokenizer.encode(text)
        }
    }

    public func bytes(of token: Int32) -> [UInt8] {
        switch self {
        case .bytes: return [UInt8(clamping: token)]
        case .bpe(let tokenizer):
            return Int(token) < tokenizer.vocabularySize && token >= 0 ? tokenizer.tokenBytes[Int(token)] : []
        }
    }

    /// Where generation starts from when there is no prompt: a newline byte, or the token prepare
    /// puts before every document (a BPE tokenizer that has none: its tokens of a newline).
    public var start: Int32 {
        switch self {
        case .bytes: return 10
        case .bpe(let tokenizer): return tokenizer.documentSeparator ?? tokenizer.encode("\n").first ?? 0
        }
    }

    /// The tokens after which a document is over (`baton sample --stop-at-eot`): the separator
    /// prepare puts between documents and the tokenizer's end of text; bytes have none.
    public var endsOfDocument: Set<Int32> {
        switch self {
        case .bytes: return []
        case .bpe(let tokenizer): return tokenizer.endsOfDocument
        }
    }
}
