import Foundation

/// `baton train --init-from HF_DIR`: a Hugging Face folder (config.json and model.safetensors, or
/// shards listed in model.safetensors.index.json) as a run's starting weights: GPT-2
/// (`GPT2LMHeadModel`) or the Llama family (model_type llama, qwen2, mistral: see
/// HuggingFaceLlamaConfig.swift for what each must say). The architecture comes from config.json;
/// anything Baton does not compute the same way is refused in one line naming the file and the
/// field, never loaded as a different model. Weights stored in bfloat16 or float16 are widened to
/// float32 exactly; other dtypes are refused.
public struct HuggingFaceModel {
    public let folder: URL
    public let config: GPTConfig
    /// Each weights file's CRC32C, recorded in the run's config (and so in state.json).
    public let checksums: [String: String]
    let files: [SafeTensors.File]

    public init(folder: URL) throws {
        let fileManager = FileManager.default
        // A Baton run folder (its newest good checkpoint) or checkpoint: its weights and shape, and
        // the checkpoint itself as the source recorded (a resume, or another rank, loads that one).
        if ["checkpoints", CheckpointStore.stateFile].contains(where: {
            fileManager.fileExists(atPath: folder.appendingPathComponent($0).path)
        }) {
            let weights = try ModelWeights.resolve(path: folder.path)
            let file = try SafeTensors.read(weights)
            self.folder = weights.deletingLastPathComponent()
            config = try ModelWeights.config(of: file)
            files = [file]
            checksums = [weights.lastPathComponent: TensorFile.hex(try CheckpointStore.crc32c(of: weights))]
            return
        }
        self.folder = folder
        let configURL = folder.appendingPathComponent("config.json")
        guard let configData = fileManager.contents(atPath: configURL.path) else {
            throw BatonError(
                "--init-from \(folder.path): no config.json; give a Hugging Face folder (GPT-2, or the Llama family: "
                    + "\(Self.llamaFamilyTypes.joined(separator: ", ")))")
        }
        guard let json = try? JSONSerialization.jsonObject(with: configData) as? [String: Any] else {
            throw BatonError("\(configURL.path): not a JSON object")
        }
        let file = HuggingFaceConfigFile(url: configURL, json: json)
        let type = file.string("model_type") ?? "gpt2"
        if type == "gpt2" {
            config = try Self.gpt2Config(file)
        } else if Self.llamaFamilyTypes.contains(type) {
            config = try Self.llamaConfig(file, type: type)
        } else {
            throw file.fail(
                "model_type \(type) is not one Baton reads: gpt2, or the Llama family's "
                    + "\(Self.llamaFamilyTypes.joined(separator: ", ")) (\(Self.otherLayers[type] ?? "other layers"))")
        }
        // The weights: one model.safetensors, or the shards an index names.
        var names: [String]
        let index = folder.appendingPathComponent("model.safetensors.index.json")
        if let indexData = fileManager.contents(atPath: index.path) {
            guard
                let map = (try? JSONSerialization.jsonObject(with: indexData) as? [String: Any])?["weight_map"]
                    as? [String: String]
            else {
                throw BatonError("\(index.path): no weight_map of tensor names to files")
            }
            names = Array(Set(map.values)).sorted()
            guard names.allSatisfy({ !$0.contains("/") }) else {
                throw BatonError("\(index.path): names a file outside the folder")
            }
        } else if fileManager.fileExists(atPath: folder.appendingPathComponent("model.safetensors").path) {
            names = ["model.safetensors"]
        } else if fileManager.fileExists(atPath: folder.appendingPathComponent("pytorch_model.bin").path) {
            throw BatonError(
                "--init-from \(folder.path): only pytorch_model.bin; Baton reads safetensors only. Convert it with "
                    + "transformers: AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(DIR, "
                    + "safe_serialization=True)"
            )
        } else {
            throw BatonError("--init-from \(folder.path): no model.safetensors (or model.safetensors.index.json)")
        }
        files = try names.map { try SafeTensors.read(folder.appendingPathComponent($0)) }
        var sums: [String: String] = [:]
        for name in names {
            sums[name] = TensorFile.hex(try CheckpointStore.crc32c(of: folder.appendingPathComponent(name)))
        }
        checksums = sums
    }

    /// GPT2LMHeadModel's config.json: anything Baton's GPT-2 does not compute the same way (another
    /// activation or LayerNorm epsilon, untied embeddings, scaled or reordered attention, another MLP
    /// width) is refused.
    static func gpt2Config(_ file: HuggingFaceConfigFile) throws -> GPTConfig {
        let activation = file.string("activation_function") ?? "gelu_new"
        guard ["gelu_new", "gelu_pytorch_tanh"].contains(activation) else {
            throw file.fail("activation_function \(activation); Baton computes GPT-2's tanh GELU (gelu_new) only")
        }
        if let epsilon = try file.number("layer_norm_epsilon"), abs(epsilon - 1e-5) > 1e-12 {
            throw file.fail("layer_norm_epsilon \(epsilon); Baton's LayerNorm uses 1e-5")
        }
        if file.bool("tie_word_embeddings") == false {
            throw file.fail("untied word embeddings; Baton ties the LM head to wte")
        }
        if file.bool("scale_attn_by_inverse_layer_idx") == true || file.bool("reorder_and_upcast_attn") == true
            || file.bool("scale_attn_weights") == false
        {
            throw file.fail("attention scaled or ordered otherwise than GPT-2's; not supported")
        }
        let channels = try file.integer("n_embd")
        if let inner = try file.optionalInteger("n_inner"), inner != 4 * channels {
            throw file.fail("n_inner \(inner); Baton's MLP is 4 x n_embd (\(4 * channels))")
        }
        let config = GPTConfig(
            contextLength: try file.integer("n_positions"), vocabularySize: try file.integer("vocab_size"),
            layers: try file.integer("n_layer"), heads: try file.integer("n_head"), channels: channels)
        try config.validate(file: file.url.path, key: \.huggingFaceKey)
        return config
    }

    /// The tensor for Baton's parameter name: as it is, or without the "transformer." prefix
    /// (the form of the original GPT-2 files).
    func entry(_ name: String) -> (SafeTensors.File, SafeTensors.Entry)? {
        let short = name.hasPrefix("transformer.") ? String(name.dropFirst("transformer.".count)) : name
        for file in files {
            if let entry = file.entries[name] ?? file.entries[short] { return (file, entry) }
        }
        return nil
    }

    /// Puts every parameter into `model` (whose config must be this one, but for a Llama-family
    /// run's shorter context), after checking names, shapes and dtypes, that a stored lm_head of a
    /// tied model is the token embedding itself, and (the Llama family) that no tensor is left over.
    public func load(into model: GPT) throws {
        var expected = config
        if config.architecture == .llama { expected.contextLength = model.config.contextLength }
        precondition(model.config == expected)
        var found: [(ParameterSpec, SafeTensors.File, SafeTensors.Entry)] = []
        for spec in model.layout.specs {
            guard let (file, entry) = entry(spec.name) else {
                let untied = spec.name == "lm_head.weight" ? " (config.json says tie_word_embeddings false)" : ""
                throw BatonError("--init-from \(folder.path): missing tensor \(spec.name)\(untied)")
            }
            guard SafeTensors.widenedToFloat32.contains(entry.dtype) else {
                throw BatonError(
                    "\(file.url.path): tensor \(entry.name) is \(entry.dtype); Baton starts from float32, bfloat16 or "
                        + "float16 weights (widened to float32 exactly)")
            }
            guard entry.shape == spec.shape else {
                throw BatonError(
                    "\(file.url.path): tensor \(entry.name) has shape \(entry.shape), config.json implies \(spec.shape)"
                )
            }
            found.append((spec, file, entry))
        }
        let embedding = model.layout.specs[0].name  // the token embedding comes first in both families
        if config.tiedEmbeddings, let (headFile, head) = entry("lm_head.weight"),
            let (embeddingFile, stored) = entry(embedding)
        {
            let same = try headFile.withFloat32Values(head) { a in
                try embeddingFile.withFloat32Values(stored) { b in a.elementsEqual(b) }
            }
            guard same else {
                throw BatonError(
                    "\(headFile.url.path): lm_head.weight differs from \(embedding); config.json ties the LM head to "
                        + "the token embedding")
            }
        }
        if config.architecture == .llama {
            let known = Set(model.layout.specs.map(\.name) + ["lm_head.weight"])
            for file in files {
                for name in file.names where !known.contains(name) && !name.hasSuffix(".rotary_emb.inv_freq") {
                    throw BatonError(
                        "\(file.url.path): tensor \(name) is no part of the model config.json describes; Baton would "
                            + "leave it out")
                }
            }
        }
        for (spec, file, entry) in found {
            try file.withFloat32Values(entry) {
                try model.device.upload($0, to: model.parameters.slice(spec.offset, spec.count))
            }
        }
    }
}

/// A Hugging Face config.json, read key by key; every error names the file.
struct HuggingFaceConfigFile {
    let url: URL
    let json: [String: Any]

    func fail(_ text: String) -> BatonError { BatonError("\(url.path): \(text)") }

    /// Whether `key` is there with a value other than null.
    func isSet(_ key: String) -> Bool { json[key] != nil && !(json[key] is NSNull) }

    func string(_ key: String) -> String? { json[key] as? String }
    func bool(_ key: String) -> Bool? { json[key] as? Bool }

    func integer(_ key: String) throws -> Int {
        guard let value = try optionalInteger(key) else { throw fail("no integer \(key)") }
        return value
    }

    /// nil when absent or null.
    func optionalInteger(_ key: String) throws -> Int? {
        guard isSet(key) else { return nil }
        guard let value = json[key] as? Int else { throw fail("\(key) is not an integer") }
        return value
    }

    /// nil when absent or null.
    func number(_ key: String) throws -> Double? {
        guard isSet(key) else { return nil }
        guard let value = json[key] as? Double else { throw fail("\(key) is not a number") }
        return value
    }
}
