import Foundation

/// `baton prepare --sft FILE.jsonl`: conversations (one a line, `{"messages": [{"role": ...,
/// "content": ...}, ...]}`, the format minimind and transformers' chat templates read) -> masked
/// token shards (TokenShard.Format.masked), whose flag marks the tokens trained on: each
/// assistant's reply and its end marker (ChatFormat). Conversations are packed one after the
/// other, as documents are for pretraining, and the loader cuts windows of T+1 tokens from the
/// stream as ever: no tokens are spent on padding, the sequence length stays a training setting,
/// and the loader, its shuffle, resume and data parallelism are unchanged. A window may begin
/// inside a conversation; its targets before the next reply are simply not trained on. With
/// `padTo` (`--pad-to`, give it the run's --seq-len) each conversation is padded with the start
/// token, not trained on, to a whole number of that many tokens, so every conversation starts a
/// window (at position 0, as a chat does), as minimind pads each sample.
/// Validation is the first tenth of the conversations (none when there is only one). The input
/// is read whole (conversation sets are small); the output is written as every dataset is
/// (DatasetFolder: whole or not at all).
public struct ConversationPreparation {
    public let tokenizer: BPETokenizer
    public let tokenizerFolder: URL
    public let format: ChatFormat
    public var name = "corpus"
    public var overwrite = false
    /// Pad each conversation to a multiple of this many tokens (nil: packed).
    public var padTo: Int?

    public struct Result {
        public let conversations: Int, validationConversations: Int
        public let trainTokens: Int, valTokens: Int, trainedTokens: Int
        public let format: ChatFormat.Kind
    }

    public init(tokenizerFolder: URL) throws {
        tokenizer = try BPETokenizer(folder: tokenizerFolder)
        self.tokenizerFolder = tokenizerFolder
        format = try ChatFormat(tokenizer: tokenizer, describing: tokenizerFolder.path)
    }

    /// A usage error (exit 2) naming the file and line.
    static func badLine(_ file: URL, _ line: Int, _ text: String) -> BatonError {
        BatonError.invalidFlag(flag: "--sft", message: "\(file.path): line \(line): \(text)")
    }

    /// One line's conversation as (token, trained) pairs, the start token first.
    func conversation(_ line: Data, file: URL, number: Int) throws -> [(token: Int32, trained: Bool)] {
        guard CorpusPreparation.firstInvalidUTF8(line) == nil else {
            throw ConversationPreparation.badLine(file, number, "not valid UTF-8; convert the file to UTF-8 first")
        }
        guard let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any] else {
            throw ConversationPreparation.badLine(file, number, "not a JSON object")
        }
        guard let messages = object["messages"] as? [Any], !messages.isEmpty else {
            throw ConversationPreparation.badLine(
                file, number, "no \"messages\" list (expected {\"messages\": [{\"role\": ..., \"content\": ...}]})")
        }
        var tokens: [(token: Int32, trained: Bool)] = [(format.start, false)]
        var replies = 0
        for (index, entry) in messages.enumerated() {
            guard let message = entry as? [String: Any], let role = message["role"] as? String,
                let content = message["content"] as? String
            else {
                throw ConversationPreparation.badLine(
                    file, number, "messages[\(index)] is not {\"role\": string, \"content\": string}")
            }
            guard ChatFormat.roles.contains(role) else {
                throw ConversationPreparation.badLine(
                    file, number,
                    "messages[\(index)] has role \"\(role)\"; expected \(ChatFormat.roles.joined(separator: ", "))")
            }
            if role == "assistant" { replies += 1 }
            tokens += format.message(role: role, content: content, tokenizer: tokenizer)
        }
        guard replies > 0 else {
            throw ConversationPreparation.badLine(file, number, "no assistant message, so nothing to train on")
        }
        if let padTo, tokens.count % padTo != 0 {
            tokens += repeatElement((token: format.start, trained: false), count: padTo - tokens.count % padTo)
        }
        return tokens
    }

    public func prepare(file: URL, outputFolder: URL) throws -> Result {
        try PrepareInputs.check([file])
        guard let data = FileManager.default.contents(atPath: file.path) else {
            throw BatonError("\(file.path): cannot read")
        }
        var conversations: [[(token: Int32, trained: Bool)]] = []
        for (offset, line) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
            conversations.append(try conversation(Data(line), file: file, number: offset + 1))
        }
        guard !conversations.isEmpty else { throw BatonError("\(file.path): no conversations") }
        let validation = conversations.count >= 2 ? max(1, conversations.count / 10) : 0
        func entries(_ part: ArraySlice<[(token: Int32, trained: Bool)]>) -> [UInt32] {
            let packed = part.flatMap {
                $0.map { UInt32($0.token) | ($0.trained ? TokenShard.Format.trainedOnBit : 0) }
            }
            // Padded: one more start token, so the last conversation's window has its T+1st token.
            return padTo == nil || packed.isEmpty ? packed : packed + [UInt32(format.start)]
        }
        let val = entries(conversations[..<validation]), train = entries(conversations[validation...])
        let dataset = try DatasetFolder(out: outputFolder, overwrite: overwrite)
        do {
            var shards: [(name: String, tokens: Int, crc32c: UInt32)] = []
            for (split, entries) in [("val", val), ("train", train)] where !entries.isEmpty {
                let shard = "\(name)_\(split)_000000.bin"
                let crc = try ShardSequence<UInt32>.writeShard(
                    entries[...], to: dataset.url(shard), format: .masked)
                shards.append((shard, entries.count, crc))
            }
            try CorpusPreparation.writeDatasetRecord(
                to: dataset.temporary, tokenizer: tokenizer, tokenizerFolder: tokenizerFolder,
                separator: format.start, shards: shards, format: .masked,
                extra: ["chat_format": format.kind.rawValue, "conversations": conversations.count]
                    .merging(padTo.map { ["padded_to": $0] } ?? [:]) { a, _ in a })
            try dataset.commit(overwrite: overwrite)
        } catch {
            dataset.abandon()
            throw error
        }
        let trained = conversations.reduce(0) { $0 + $1.filter(\.trained).count }
        return Result(
            conversations: conversations.count, validationConversations: validation, trainTokens: train.count,
            valTokens: val.count, trainedTokens: trained, format: format.kind)
    }
}
