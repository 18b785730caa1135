import Foundation

/// Reads a Hugging Face `tokenizer.json` of the byte-level BPE kind Llama 3, Qwen2, SmolLM and
/// GPT-2 ship, and the folder's `tokenizer_config.json` when there is one. What Baton implements:
/// - model BPE (vocab; merges as "a b" strings or ["a", "b"] pairs; ignore_merges), no dropout, no
///   byte fallback, no subword prefix or suffix;
/// - normalizer none or NFC;
/// - pre_tokenizer ByteLevel (GPT-2's pattern); Sequence [Split (Llama 3's, Qwen2's or GPT-2's
///   pattern, Isolated), ByteLevel without its regex]; Sequence [Digits (individual), ByteLevel];
///   ByteLevel never adds a prefix space;
/// - added_tokens without lstrip, rstrip or single_word, each with the id Hugging Face gives it
///   (its id in model.vocab, else the next one after the model's tokens, in order);
/// - decoder none or ByteLevel.
/// Anything else is refused in one line naming the file and the thing.
///
/// Beginning and end of text: tokenizer_config.json's bos_token and eos_token where it gives them,
/// else the special tokens the post_processor's TemplateProcessing puts before and after a text,
/// else an added special token named <|endoftext|>, <|end_of_text|> or </s> as the end. The
/// beginning is put before every text (so prepare puts it before every document) where the
/// post_processor's template starts with it, or tokenizer_config.json's add_bos_token says so.
extension BPETokenizer {
    public convenience init(huggingFaceFolder folder: URL) throws {
        let url = folder.appendingPathComponent("tokenizer.json")
        let configURL = folder.appendingPathComponent("tokenizer_config.json")
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw BatonError("\(url.path): cannot read it")
        }
        try self.init(
            tokenizerJSON: data, config: FileManager.default.contents(atPath: configURL.path), path: url.path,
            configPath: configURL.path)
    }

    public convenience init(
        tokenizerJSON: Data, config: Data? = nil, path: String = "tokenizer.json",
        configPath: String = "tokenizer_config.json"
    ) throws {
        let reader = TokenizerJSONReader(path: path)
        guard let root = (try? JSONSerialization.jsonObject(with: tokenizerJSON)) as? [String: Any] else {
            throw reader.error("is not a JSON object; a Hugging Face tokenizer.json is one (save it with tokenizers)")
        }
        let model = try reader.model(root["model"])
        let normalizesNFC = try reader.normalizer(root["normalizer"])
        let preTokenizer = try reader.preTokenizer(root["pre_tokenizer"])
        try reader.decoder(root["decoder"])
        let vocab = try reader.vocabulary(model["vocab"])
        let added = try reader.addedTokens(root["added_tokens"], vocabulary: vocab)
        let addedIDs = Dictionary(added.map { (String(decoding: $0.content, as: UTF8.self), $0.id) }) { a, _ in a }

        // Every id's bytes: the model's tokens in the byte alphabet; added tokens as Hugging Face
        // decodes them (the alphabet's bytes where every character is in it, else their UTF-8).
        var bytes = [[UInt8]](repeating: [], count: vocab.count + added.filter { vocab[$0.text] == nil }.count)
        var wholePieces: [[UInt8]: Int32] = [:]
        for (symbol, id) in vocab {
            if let tokenBytes = ByteAlphabet.bytes(of: symbol) {
                bytes[id] = tokenBytes
                wholePieces[tokenBytes] = Int32(id)
            } else if addedIDs[symbol] != nil {
                bytes[id] = Array(symbol.utf8)
            } else {
                throw reader.error(
                    "model.vocab: token \(symbol.debugDescription) is not in the byte-level alphabet (GPT-2's "
                        + "bytes_to_unicode); Baton reads byte-level BPE tokenizers only")
            }
        }
        for token in added where vocab[token.text] == nil {
            bytes[Int(token.id)] = ByteAlphabet.bytes(of: token.text) ?? token.content
        }
        let byteTokens = try (0..<256).map { byte in
            guard let id = vocab[ByteAlphabet.symbol(of: [UInt8(byte)])] else {
                throw reader.error("model.vocab has no token for byte \(byte); a byte-level vocabulary has all 256")
            }
            return Int32(id)
        }
        let merges = try reader.merges(model["merges"], vocabulary: vocab)
        let ignoreMerges = (model["ignore_merges"] as? Bool) ?? false
        let encoder = BytePairEncoder(
            tokenBytes: bytes, byteTokens: byteTokens, merges: merges, wholePieces: ignoreMerges ? wholePieces : nil)

        // Added tokens, split by the text they match: raw, or normalized (their content normalized too).
        func matched(_ normalized: Bool) -> AddedTokens {
            AddedTokens(
                added.filter { $0.normalized == normalized }.map { token in
                    guard normalized, normalizesNFC else { return token }
                    var content: [UInt8] = []
                    token.content.withUnsafeBufferPointer { NFCNormalizer.normalize($0, into: &content) }
                    return AddedTokens.Token(content: content, id: token.id, special: token.special, normalized: true)
                })
        }
        let ends = try reader.declaredEnds(
            config: config, configPath: configPath, postProcessor: root["post_processor"], added: added,
            id: { addedIDs[$0] ?? vocab[$0].map(Int32.init) })
        self.init(
            kind: .tokenizerJSON, preTokenizer: preTokenizer, normalizesNFC: normalizesNFC,
            rawTokens: matched(false), normalizedTokens: matched(true), encoder: encoder,
            beginOfText: ends.begin, endOfText: ends.end, addsBeginOfText: ends.addsBegin)
    }
}

extension PreTokenizer {
    /// The regular expression each pre-tokenizer is, as tokenizer.json spells it (after JSON
    /// decoding). Llama 3's and Qwen2's differ only in how many number characters a piece takes.
    static let patterns: [String: PreTokenizer] = {
        let letters = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"#
        let rest = #"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        return [
            #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#: .gpt2,
            letters + #"\p{N}{1,3}"# + rest: .llama3,
            letters + #"\p{N}"# + rest: .qwen2,
        ]
    }()
}

/// The parts of tokenizer.json, each read and checked, with errors that name the file and the key.
private struct TokenizerJSONReader {
    let path: String
    static let kinds = "Llama 3, Qwen2, SmolLM, GPT-2"

    func error(_ message: String) -> BatonError { BatonError("\(path): \(message)") }

    func unsupported(_ what: String) -> BatonError {
        error("\(what) is not something Baton implements; it reads byte-level BPE tokenizers (\(Self.kinds))")
    }

    func object(_ value: Any?, _ key: String) throws -> [String: Any] {
        guard let object = value as? [String: Any] else {
            throw error("\(key) is \(value == nil || value is NSNull ? "missing" : "not a JSON object")")
        }
        return object
    }

    func type(of object: [String: Any]) -> String { object["type"] as? String ?? "(no type)" }

    func model(_ value: Any?) throws -> [String: Any] {
        let model = try object(value, "model")
        let type = model["type"] as? String ?? (model["merges"] != nil ? "BPE" : "(no type)")
        guard type == "BPE" else { throw unsupported("model.type '\(type)'") }
        if model["byte_fallback"] as? Bool == true {
            throw error(
                "model.byte_fallback is true: a SentencePiece-style tokenizer (Llama 2, Mistral, Gemma), which Baton "
                    + "does not implement; it reads byte-level BPE tokenizers (\(Self.kinds))")
        }
        if let dropout = model["dropout"] as? Double, dropout != 0 {
            throw unsupported("model.dropout \(dropout) (BPE dropout)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let affix = model[key] as? String, !affix.isEmpty { throw unsupported("model.\(key) '\(affix)'") }
        }
        return model
    }

    /// Whether the text is NFC-normalized: a normalizer of none, NFC, or a Sequence of NFC alone.
    func normalizer(_ value: Any?) throws -> Bool {
        guard let value, !(value is NSNull) else { return false }
        let normalizer = try object(value, "normalizer")
        switch type(of: normalizer) {
        case "NFC": return true
        case "Sequence":
            let list = normalizer["normalizers"] as? [[String: Any]] ?? []
            if list.isEmpty { return false }
            if list.count == 1, type(of: list[0]) == "NFC" { return true }
            throw unsupported("normalizer Sequence [\(list.map { type(of: $0) }.joined(separator: ", "))]")
        default:
            throw unsupported("normalizer '\(type(of: normalizer))' (Baton implements NFC, or none)")
        }
    }

    func preTokenizer(_ value: Any?) throws -> PreTokenizer {
        guard let value, !(value is NSNull) else {
            throw unsupported("no pre_tokenizer (Baton implements ByteLevel, and Split or Digits then ByteLevel)")
        }
        let root = try object(value, "pre_tokenizer")
        let steps: [[String: Any]]
        if type(of: root) == "Sequence" {
            guard let list = root["pretokenizers"] as? [[String: Any]] else {
                throw error("pre_tokenizer.pretokenizers is not a list of pre-tokenizers")
            }
            steps = list
        } else {
            steps = [root]
        }
        let names = steps.map { type(of: $0) }
        if names.contains("Metaspace") {
            throw error(
                "pre_tokenizer Metaspace is SentencePiece's (Llama 2, Mistral), which Baton does not implement; it "
                    + "reads byte-level BPE tokenizers (\(Self.kinds))")
        }
        switch names {
        case ["ByteLevel"]:
            try byteLevel(steps[0], regex: true)
            return .gpt2
        case ["Digits", "ByteLevel"]:
            guard steps[0]["individual_digits"] as? Bool == true else {
                throw unsupported("pre_tokenizer Digits without individual_digits")
            }
            try byteLevel(steps[1], regex: true)
            return .gpt2Digits
        case ["Split", "ByteLevel"]:
            let split = steps[0]
            guard let pattern = (split["pattern"] as? [String: Any])?["Regex"] as? String else {
                throw unsupported("pre_tokenizer Split on a string, not a Regex,")
            }
            guard let found = PreTokenizer.patterns[pattern] else {
                throw error(
                    "pre_tokenizer Split pattern '\(pattern.prefix(120))' is not one Baton implements (Llama 3's, "
                        + "Qwen2's, GPT-2's)")
            }
            let behavior = split["behavior"] as? String ?? "(none)"
            let inverted = split["invert"] as? Bool == true
            guard behavior == "Isolated", !inverted else {
                throw unsupported("pre_tokenizer Split with behavior '\(behavior)'\(inverted ? ", inverted," : "")")
            }
            try byteLevel(steps[1], regex: false)
            return found
        default:
            throw unsupported("pre_tokenizer [\(names.joined(separator: ", "))]")
        }
    }

    /// ByteLevel must add no prefix space, and split with GPT-2's pattern only where nothing split before it.
    private func byteLevel(_ step: [String: Any], regex: Bool) throws {
        if step["add_prefix_space"] as? Bool == true { throw unsupported("pre_tokenizer ByteLevel add_prefix_space") }
        let usesRegex = step["use_regex"] as? Bool ?? true
        if usesRegex != regex {
            throw unsupported(
                regex
                    ? "pre_tokenizer ByteLevel with use_regex false (no pattern at all)"
                    : "pre_tokenizer ByteLevel with use_regex after a Split (two patterns)")
        }
    }

    func decoder(_ value: Any?) throws {
        guard let value, !(value is NSNull) else { return }
        let decoder = try object(value, "decoder")
        guard type(of: decoder) == "ByteLevel" else {
            throw unsupported("decoder '\(type(of: decoder))' (Baton decodes as ByteLevel)")
        }
    }

    /// model.vocab: token -> id, the ids exactly 0..<count.
    func vocabulary(_ value: Any?) throws -> [String: Int] {
        guard let vocab = value as? [String: Any] else { throw error("model.vocab is missing or not a JSON object") }
        var result: [String: Int] = [:]
        result.reserveCapacity(vocab.count)
        var seen = [Bool](repeating: false, count: vocab.count)
        for (symbol, value) in vocab {
            guard let id = value as? Int, id >= 0, id < vocab.count else {
                throw error(
                    "model.vocab: id \(value) of \(symbol.debugDescription) is not in 0..<\(vocab.count) (the ids "
                        + "of \(vocab.count) tokens); fix the vocabulary")
            }
            guard !seen[id] else { throw error("model.vocab: id \(id) is given to two tokens; fix the vocabulary") }
            seen[id] = true
            result[symbol] = id
        }
        return result
    }

    /// model.merges, in rank order: "a b" strings or ["a", "b"] pairs of tokens whose join is a token.
    func merges(_ value: Any?, vocabulary vocab: [String: Int]) throws -> [(left: Int32, right: Int32, merged: Int32)] {
        guard let list = value as? [Any] else { throw error("model.merges is missing or not a list") }
        return try list.enumerated().map { index, entry in
            let parts: [String]
            if let line = entry as? String {
                parts = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else {
                parts = entry as? [String] ?? []
            }
            guard parts.count == 2, let left = vocab[parts[0]], let right = vocab[parts[1]],
                let merged = vocab[parts[0] + parts[1]]
            else {
                throw error(
                    "model.merges[\(index)] (\(String(describing: entry).prefix(60).debugDescription)) is not a "
                        + "merge of two tokens of model.vocab whose join is one too; fix the merges")
            }
            return (Int32(left), Int32(right), Int32(merged))
        }
    }

    func addedTokens(_ value: Any?, vocabulary vocab: [String: Int]) throws -> [AddedTokens.Token] {
        guard let value, !(value is NSNull) else { return [] }
        guard let list = value as? [[String: Any]] else { throw error("added_tokens is not a list of objects") }
        var next = vocab.count
        var seen = Set<String>()
        return try list.enumerated().map { index, entry in
            guard let content = entry["content"] as? String, !content.isEmpty, let id = entry["id"] as? Int else {
                throw error("added_tokens[\(index)] has no content or no id; fix the entry")
            }
            let name = "added_tokens[\(index)] \(content.debugDescription)"
            for key in ["lstrip", "rstrip", "single_word"] where entry[key] as? Bool == true {
                throw unsupported("\(name) with \(key)")
            }
            guard seen.insert(content).inserted else { throw error("\(name) is listed twice; remove one") }
            // Hugging Face gives an added token its id in the model's vocabulary, else the next free one.
            let expected: Int
            if let inVocabulary = vocab[content] {
                expected = inVocabulary
            } else {
                expected = next
                next += 1
            }
            guard id == expected else {
                throw error(
                    "\(name) has id \(id), but Hugging Face gives it \(expected) (its id in model.vocab, or the next "
                        + "after the model's \(vocab.count) tokens, in list order); fix the id")
            }
            let special = entry["special"] as? Bool ?? false
            return AddedTokens.Token(
                content: Array(content.utf8), id: Int32(id), special: special,
                normalized: entry["normalized"] as? Bool ?? !special)
        }
    }

    /// The beginning and end of text (see the header of this file), and whether the beginning is
    /// put before every text.
    func declaredEnds(
        config: Data?, configPath: String, postProcessor: Any?, added: [AddedTokens.Token], id: (String) -> Int32?
    ) throws -> (begin: Int32?, end: Int32?, addsBegin: Bool) {
        var settings: [String: Any] = [:]
        if let config {
            guard let object = (try? JSONSerialization.jsonObject(with: config)) as? [String: Any] else {
                throw BatonError("\(configPath): is not a JSON object; fix it or remove it")
            }
            settings = object
        }
        func configured(_ key: String) throws -> Int32? {
            let value = settings[key]
            guard let name = value as? String ?? (value as? [String: Any])?["content"] as? String else { return nil }
            guard let token = id(name) else {
                throw BatonError(
                    "\(configPath): \(key) \(name.debugDescription) is not a token of \(path); fix \(key)")
            }
            return token
        }
        let (leading, trailing) = template(postProcessor, id: id)
        let begin = try configured("bos_token") ?? leading
        let fallback = added.first { $0.special && ["<|endoftext|>", "<|end_of_text|>", "</s>"].contains($0.text) }
        let end = try configured("eos_token") ?? trailing ?? fallback.map(\.id)
        if let adds = settings["add_bos_token"] as? Bool {
            if adds && begin == nil {
                throw BatonError("\(configPath): add_bos_token is true, but no bos_token is set; set bos_token")
            }
            return (begin, end, adds)
        }
        guard let leading else { return (begin, end, false) }
        return (leading, end, true)
    }

    /// The special tokens a TemplateProcessing (alone or in a Sequence) puts before and after a text.
    private func template(_ value: Any?, id: (String) -> Int32?) -> (leading: Int32?, trailing: Int32?) {
        guard let processor = value as? [String: Any] else { return (nil, nil) }
        if type(of: processor) == "Sequence" {
            for step in processor["processors"] as? [Any] ?? [] {
                let found = template(step, id: id)
                if found.leading != nil || found.trailing != nil { return found }
            }
            return (nil, nil)
        }
        guard type(of: processor) == "TemplateProcessing", let single = processor["single"] as? [[String: Any]],
            let sequence = single.firstIndex(where: { $0["Sequence"] != nil })
        else { return (nil, nil) }
        func special(_ entry: [String: Any]) -> Int32? {
            ((entry["SpecialToken"] as? [String: Any])?["id"] as? String).flatMap(id)
        }
        return (sequence > 0 ? special(single[0]) : nil, sequence + 1 < single.count ? special(single.last!) : nil)
    }
}
