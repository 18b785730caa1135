import Foundation

/// What `baton export --hf` writes beside the weights: config.json and generation_config.json for
/// the model's family, and the tokenizer files.
extension HuggingFaceExport {
    /// The class transformers loads a model of this shape as: GPT2LMHeadModel; for the Llama
    /// family LlamaForCausalLM, or Qwen2ForCausalLM where q, k and v have biases (LlamaConfig's
    /// attention_bias would put one on o_proj too; Qwen2 has exactly q/k/v biases).
    static func modelClass(_ config: GPTConfig) -> (name: String, type: String) {
        switch config.architecture {
        case .gpt2: return ("GPT2LMHeadModel", "gpt2")
        case .llama: return config.attentionBias ? ("Qwen2ForCausalLM", "qwen2") : ("LlamaForCausalLM", "llama")
        }
    }

    /// config.json under transformers' field names. bos/eos are the tokenizer's where it declares
    /// them; a Llama-family export without them writes null (an absent key would be LlamaConfig's
    /// default, 1 and 2, ids the vocabulary gives to other tokens).
    static func modelConfig(_ config: GPTConfig, tokens: SpecialTokens) -> [String: Any] {
        let (name, type) = modelClass(config)
        var fields: [String: Any] = [
            "architectures": [name], "model_type": type, "vocab_size": config.vocabularySize,
            "initializer_range": 0.02, "tie_word_embeddings": config.tiedEmbeddings, "torch_dtype": "float32",
            "baton_version": batonVersion,
        ]
        switch config.architecture {
        case .gpt2:
            fields.merge(
                [
                    "n_layer": config.layers, "n_head": config.heads, "n_embd": config.channels,
                    "n_positions": config.contextLength, "n_ctx": config.contextLength,
                    "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.0,
                    "embd_pdrop": 0.0, "attn_pdrop": 0.0,
                ], uniquingKeysWith: { $1 })
            if let bos = tokens.bos { fields["bos_token_id"] = bos }
            if let eos = tokens.eos { fields["eos_token_id"] = eos }
        case .llama:
            // Float settings as their shortest decimal (1e-06, not 9.99999997e-07): the float32
            // transformers rounds it to is then the one Baton computes with.
            let theta = Double(String(config.ropeTheta))!, epsilon = Double(String(config.normEpsilon))!
            fields.merge(
                [
                    "hidden_size": config.channels, "intermediate_size": config.hiddenSize,
                    "num_hidden_layers": config.layers, "num_attention_heads": config.heads,
                    "num_key_value_heads": config.keyValueHeads, "hidden_act": "silu",
                    "max_position_embeddings": config.contextLength, "rms_norm_eps": epsilon, "rope_theta": theta,
                    "rope_parameters": ["rope_type": "default", "rope_theta": theta], "attention_dropout": 0.0,
                    "use_cache": true, "bos_token_id": tokens.bos ?? NSNull(), "eos_token_id": tokens.eos ?? NSNull(),
                ], uniquingKeysWith: { $1 })
            if config.attentionBias {  // Qwen2: q/k/v biases always, attention over the whole context
                fields.merge(
                    ["use_sliding_window": false, "sliding_window": NSNull(), "max_window_layers": config.layers],
                    uniquingKeysWith: { $1 })
            } else {
                fields.merge(
                    ["head_dim": config.headSize, "attention_bias": false, "mlp_bias": false],
                    uniquingKeysWith: { $1 })
            }
        }
        return fields
    }

    /// generation_config.json: sampling up to the context, with the tokenizer's bos/eos.
    static func generationConfig(_ config: GPTConfig, tokens: SpecialTokens) -> [String: Any] {
        var fields: [String: Any] = ["do_sample": true, "max_length": config.contextLength]
        if let bos = tokens.bos { fields["bos_token_id"] = bos }
        if let eos = tokens.eos { fields["eos_token_id"] = eos }
        return fields
    }

    /// The ids of the tokenizer's beginning- and end-of-text tokens, where it declares them.
    struct SpecialTokens: Equatable {
        var bos: Int?
        var eos: Int?
    }

    /// The tokenizer files an export carries: those of the run's tokenizer folder that transformers
    /// reads (vocab.json and merges.txt, tokenizer.json, tokenizer_config.json,
    /// special_tokens_map.json), copied as they are; for a GPT-2 folder (vocab.json and merges.txt)
    /// without its own tokenizer_config.json or special_tokens_map.json, GPT-2's, written here.
    struct TokenizerFiles {
        static let copied = [
            "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        ]

        var files: [(name: String, data: Data)] = []
        var tokens = SpecialTokens()
        /// What the export log calls it: "gpt2" (vocab.json and merges.txt) or "tokenizer.json".
        var description = "bytes (no Hugging Face tokenizer)"

        init() {}

        init(folder: URL, contextLength: Int) throws {
            let fileManager = FileManager.default
            func has(_ name: String) -> Bool {
                fileManager.fileExists(atPath: folder.appendingPathComponent(name).path)
            }
            let gpt2 = has("vocab.json") && has("merges.txt")
            guard gpt2 || has("tokenizer.json") else {
                throw BatonError(
                    "\(folder.path): the run's tokenizer folder holds neither tokenizer.json nor vocab.json and "
                        + "merges.txt; nothing to export as its tokenizer")
            }
            for name in Self.copied where has(name) {
                let url = folder.appendingPathComponent(name)
                guard let data = fileManager.contents(atPath: url.path) else {
                    throw BatonError("\(url.path): cannot read the tokenizer file")
                }
                files.append((name, data))
            }
            description = has("tokenizer.json") ? "tokenizer.json" : "gpt2"
            let eot = GPT2Tokenizer.endOfTextText
            func json(_ object: [String: Any]) throws -> Data { try HuggingFaceExport.json(object) }
            if gpt2 && !has("tokenizer_config.json") {
                files.append(
                    (
                        "tokenizer_config.json",
                        try json([
                            "tokenizer_class": "GPT2Tokenizer", "model_max_length": contextLength,
                            "add_prefix_space": false, "bos_token": eot, "eos_token": eot, "unk_token": eot,
                            "errors": "replace",
                        ])
                    ))
            }
            if gpt2 && !has("special_tokens_map.json") {
                files.append(
                    ("special_tokens_map.json", try json(["bos_token": eot, "eos_token": eot, "unk_token": eot])))
            }
            tokens = Self.specialTokens(files: Dictionary(files.map { ($0.name, $0.data) }, uniquingKeysWith: { $1 }))
        }

        /// bos and eos: the tokens tokenizer_config.json names (a string, or an object's "content"),
        /// looked up in its added_tokens_decoder, tokenizer.json's added tokens and vocabulary, or
        /// vocab.json; a token it names that none of them holds is not declared.
        static func specialTokens(files: [String: Data]) -> SpecialTokens {
            func object(_ name: String) -> [String: Any]? {
                files[name].flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            }
            let settings = object("tokenizer_config.json") ?? [:], tokenizer = object("tokenizer.json") ?? [:]
            var ids: [String: Int] = object("vocab.json")?.compactMapValues { $0 as? Int } ?? [:]
            if let model = tokenizer["model"] as? [String: Any], let vocabulary = model["vocab"] as? [String: Any] {
                ids.merge(vocabulary.compactMapValues { $0 as? Int }, uniquingKeysWith: { $1 })
            }
            for case let token as [String: Any] in tokenizer["added_tokens"] as? [Any] ?? [] {
                if let content = token["content"] as? String, let id = token["id"] as? Int { ids[content] = id }
            }
            for case let (key, token as [String: Any]) in settings["added_tokens_decoder"] as? [String: Any] ?? [:] {
                if let content = token["content"] as? String, let id = Int(key) { ids[content] = id }
            }
            func named(_ key: String) -> Int? {
                let value = settings[key]
                let content = value as? String ?? (value as? [String: Any])?["content"] as? String
                return content.flatMap { ids[$0] }
            }
            return SpecialTokens(bos: named("bos_token"), eos: named("eos_token"))
        }
    }

    static func json(_ object: [String: Any]) throws -> Data {
        try JSONSerialization.data(
            withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}
