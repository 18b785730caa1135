import Foundation

/// A data folder's `dataset.json` (written by `baton prepare --tokenizer gpt2|DIR`): which
/// tokenizer made its shards, so train, eval and sample need not be told. A folder without one
/// holds byte-level (or llm.c's own) shards.
public struct DatasetRecord {
    public let tokenizer: String
    public let vocabularySize: Int
    /// The tokenizer's vocab.json and merges.txt, copied beside the shards.
    public let tokenizerFolder: URL

    public static func read(dataFolder: URL) throws -> DatasetRecord? {
        let url = dataFolder.appendingPathComponent(CorpusPreparation.datasetFile)
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let name = object["tokenizer"] as? String,
              let vocabulary = object["vocab_size"] as? Int, let folder = object["tokenizer_folder"] as? String, !folder.contains("..") else {
            throw BatonError("\(url.path): not a dataset record (tokenizer, vocab_size, tokenizer_folder); prepare the folder again")
        }
        return DatasetRecord(tokenizer: name, vocabularySize: vocabulary, tokenizerFolder: dataFolder.appendingPathComponent(folder))
    }
}

/// The tokenizer a model's text goes through: bytes, or GPT-2 BPE.
public enum TextTokenizer {
    case bytes
    case bpe(GPT2Tokenizer)

    /// `--tokenizer bytes|gpt2|DIR`.
    public static func named(_ name: String) throws -> TextTokenizer {
        switch name {
        case "bytes": return .bytes
        case "gpt2": return .bpe(try GPT2Tokenizer.bundled())
        default: return .bpe(try GPT2Tokenizer(folder: URL(fileURLWithPath: name)))
        }
    }

    /// The tokenizer a checkpoint's text went through (ModelWeights.tokenizerFolder: its data's,
    /// or its Hugging Face source's), else the one its vocabulary implies: 256 is bytes, 50257 GPT-2's.
    public static func forModel(vocabularySize: Int, tokenizerFolder: URL?) throws -> TextTokenizer {
        if let tokenizerFolder { return .bpe(try GPT2Tokenizer(folder: tokenizerFolder)) }
        switch vocabularySize {
        case ByteTokenizer.vocabularySize: return .bytes
        case 50257: return .bpe(try GPT2Tokenizer.bundled())
        default: throw BatonError("vocabulary \(vocabularySize) is neither bytes (256) nor GPT-2 (50257), and the data folder records no tokenizer; pass --tokenizer DIR")
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
        case .bpe(let tokenizer): return Int(token) < tokenizer.vocabularySize && token >= 0 ? tokenizer.tokenBytes[Int(token)] : []
        }
    }

    /// Where generation starts from when there is no prompt: a newline byte, or <|endoftext|>.
    public var start: Int32 {
        switch self {
        case .bytes: return 10
        case .bpe: return GPT2Tokenizer.endOfText
        }
    }
}
