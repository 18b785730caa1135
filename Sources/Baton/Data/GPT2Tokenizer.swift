import Foundation

/// GPT-2's tokenizer files: a Hugging Face folder's `vocab.json` and `merges.txt`, read into a
/// BPETokenizer with GPT-2's pre-tokenizer, byte-exact with tiktoken's `r50k_base` and Hugging
/// Face's GPT-2 tokenizer. `<|endoftext|>` (50256) is never produced from text: a literal
/// "<|endoftext|>" inside a document is ordinary text, as in tiktoken's `encode_ordinary` and
/// llm.c's data scripts; documents are separated by `baton prepare`, which puts the token itself
/// before each one.
public enum GPT2Tokenizer {
    public static let endOfText: Int32 = 50256
    public static let endOfTextText = "<|endoftext|>"

    /// The tokenizer shipped in `data/gpt2-tokenizer/` (from the working directory, or beside
    /// the executable's repository).
    public static func bundled() throws -> BPETokenizer {
        try BPETokenizer(gpt2Folder: bundledFolder())
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
}

extension BPETokenizer {
    /// Reads a Hugging Face tokenizer folder's `vocab.json` and `merges.txt`.
    public convenience init(gpt2Folder folder: URL) throws {
        let vocabURL = folder.appendingPathComponent("vocab.json"),
            mergesURL = folder.appendingPathComponent("merges.txt")
        for url in [vocabURL, mergesURL] where !FileManager.default.fileExists(atPath: url.path) {
            throw BatonError(
                "\(folder.path): no \(url.lastPathComponent); a tokenizer folder holds tokenizer.json, or GPT-2's "
                    + "vocab.json and merges.txt"
            )
        }
        guard let vocabData = FileManager.default.contents(atPath: vocabURL.path),
            let mergesData = FileManager.default.contents(atPath: mergesURL.path)
        else {
            throw BatonError("\(folder.path): cannot read vocab.json or merges.txt")
        }
        try self.init(vocabJSON: vocabData, merges: mergesData, vocabPath: vocabURL.path, mergesPath: mergesURL.path)
    }

    public convenience init(
        vocabJSON: Data, merges mergesText: Data, vocabPath: String = "vocab.json", mergesPath: String = "merges.txt"
    ) throws {
        guard let object = try? JSONSerialization.jsonObject(with: vocabJSON), let vocab = object as? [String: Int]
        else {
            throw BatonError("\(vocabPath): not a JSON object of token strings to ids")
        }
        var bytes = [[UInt8]?](repeating: nil, count: vocab.count)
        for (symbol, id) in vocab {
            guard id >= 0, id < vocab.count else {
                throw BatonError("\(vocabPath): id \(id) of \(symbol.debugDescription) is outside 0..<\(vocab.count)")
            }
            guard bytes[id] == nil else { throw BatonError("\(vocabPath): id \(id) is given to two tokens") }
            if symbol == GPT2Tokenizer.endOfTextText { bytes[id] = Array(symbol.utf8); continue }
            guard let tokenBytes = ByteAlphabet.bytes(of: symbol) else {
                throw BatonError("\(vocabPath): token \(symbol.debugDescription) is not in GPT-2's byte alphabet")
            }
            bytes[id] = tokenBytes
        }
        let byteTokens = try (0..<256).map { byte in
            guard let id = vocab[ByteAlphabet.symbol(of: [UInt8(byte)])] else {
                throw BatonError("\(vocabPath): no token for byte \(byte)")
            }
            return Int32(id)
        }
        var pairs: [(left: Int32, right: Int32, merged: Int32)] = []
        let lines = String(decoding: mergesText, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
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
            pairs.append((Int32(left), Int32(right), Int32(merged)))
        }
        let endOfText = vocab[GPT2Tokenizer.endOfTextText].map(Int32.init)
        self.init(
            kind: .gpt2, preTokenizer: .gpt2,
            encoder: BytePairEncoder(tokenBytes: bytes.map { $0 ?? [] }, byteTokens: byteTokens, merges: pairs),
            beginOfText: endOfText, endOfText: endOfText, addsBeginOfText: false)
    }
}
