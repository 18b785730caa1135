import Foundation

/// `baton train --init-from HF_DIR`: a Hugging Face `GPT2LMHeadModel` folder (config.json and
/// model.safetensors, or shards listed in model.safetensors.index.json) as a run's starting
/// weights. The architecture comes from config.json; anything Baton's GPT-2 does not compute the
/// same way (another activation or LayerNorm epsilon, untied embeddings, scaled or reordered
/// attention, another MLP width, weights that are not float32) is refused in one line.
public struct HuggingFaceModel {
    public let folder: URL
    public let config: GPTConfig
    /// Each weights file's CRC32C, recorded in the run's config (and so in state.json).
    public let checksums: [String: String]
    let files: [SafeTensors.File]

    public init(folder: URL) throws {
        self.folder = folder
        let fileManager = FileManager.default
        let configURL = folder.appendingPathComponent("config.json")
        guard let configData = fileManager.contents(atPath: configURL.path) else {
            throw BatonError("--init-from \(folder.path): no config.json; give a Hugging Face GPT2LMHeadModel folder")
        }
        guard let json = try? JSONSerialization.jsonObject(with: configData) as? [String: Any] else {
            throw BatonError("\(configURL.path): not a JSON object")
        }
        func integer(_ key: String) throws -> Int {
            guard let value = json[key] as? Int else { throw BatonError("\(configURL.path): no integer \(key)") }
            return value
        }
        if let type = json["model_type"] as? String, type != "gpt2" {
            throw BatonError("\(configURL.path): model_type \(type) is not gpt2")
        }
        let activation = json["activation_function"] as? String ?? "gelu_new"
        guard ["gelu_new", "gelu_pytorch_tanh"].contains(activation) else {
            throw BatonError(
                "\(configURL.path): activation_function \(activation); Baton computes GPT-2's tanh GELU (gelu_new) only"
            )
        }
        if let epsilon = json["layer_norm_epsilon"] as? Double, abs(epsilon - 1e-5) > 1e-12 {
            throw BatonError("\(configURL.path): layer_norm_epsilon \(epsilon); Baton's LayerNorm uses 1e-5")
        }
        if json["tie_word_embeddings"] as? Bool == false {
            throw BatonError("\(configURL.path): untied word embeddings; Baton ties the LM head to wte")
        }
        if json["scale_attn_by_inverse_layer_idx"] as? Bool == true || json["reorder_and_upcast_attn"] as? Bool == true
            || json["scale_attn_weights"] as? Bool == false
        {
            throw BatonError("\(configURL.path): attention scaled or ordered otherwise than GPT-2's; not supported")
        }
        let channels = try integer("n_embd")
        if let inner = json["n_inner"] as? Int, inner != 4 * channels {
            throw BatonError("\(configURL.path): n_inner \(inner); Baton's MLP is 4 x n_embd (\(4 * channels))")
        }
        config = GPTConfig(
            contextLength: try integer("n_positions"), vocabularySize: try integer("vocab_size"),
            layers: try integer("n_layer"),
            heads: try integer("n_head"), channels: channels)
        try config.validate(file: configURL.path, key: \.huggingFaceKey)
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
                    + "transformers: GPT2LMHeadModel.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)"
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

    /// The tensor for Baton's parameter name: as it is, or without the "transformer." prefix
    /// (the form of the original GPT-2 files).
    func entry(_ name: String) -> (SafeTensors.File, SafeTensors.Entry)? {
        let short = name.hasPrefix("transformer.") ? String(name.dropFirst("transformer.".count)) : name
        for file in files {
            if let entry = file.entries[name] ?? file.entries[short] { return (file, entry) }
        }
        return nil
    }

    /// Puts every parameter into `model` (whose config must be this one), after checking names,
    /// shapes and dtypes, and that a stored lm_head is wte itself.
    public func load(into model: GPT) throws {
        precondition(model.config == config)
        var found: [(ParameterSpec, SafeTensors.File, SafeTensors.Entry)] = []
        for spec in model.layout.specs {
            guard let (file, entry) = entry(spec.name) else {
                throw BatonError("--init-from \(folder.path): missing tensor \(spec.name)")
            }
            guard entry.dtype == "F32" else {
                throw BatonError(
                    "\(file.url.path): tensor \(entry.name) is \(entry.dtype); Baton starts from float32 weights only")
            }
            guard entry.shape == spec.shape else {
                throw BatonError(
                    "\(file.url.path): tensor \(entry.name) has shape \(entry.shape), config.json implies \(spec.shape)"
                )
            }
            found.append((spec, file, entry))
        }
        if let (headFile, head) = entry("lm_head.weight"), let (wteFile, wte) = entry("transformer.wte.weight") {
            let same = try headFile.withFloats(head) { a in try wteFile.withFloats(wte) { b in a.elementsEqual(b) } }
            guard same else {
                throw BatonError("\(headFile.url.path): lm_head.weight differs from wte; Baton ties the LM head to wte")
            }
        }
        for (spec, file, entry) in found {
            try file.withFloats(entry) {
                try model.device.upload($0, to: model.parameters.slice(spec.offset, spec.count))
            }
        }
    }
}
