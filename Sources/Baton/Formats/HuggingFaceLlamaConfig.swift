import Foundation

/// The Llama family's config.json, for `--init-from`. Baton reads the model types whose layers are
/// exactly its Llama family (RMSNorm, rotary embeddings over the whole head, SwiGLU, grouped-query
/// attention, optional q/k/v biases, tied or untied head), under transformers' tensor names:
///
/// - `llama` (Llama 1-3 without rope scaling, SmolLM/SmolLM2, TinyLlama, ...), with
///   attention_bias false: transformers' attention_bias puts biases on o_proj too, which Baton has not;
/// - `qwen2` (Qwen2, Qwen2.5): q/k/v biases always, no o_proj bias, no sliding window;
/// - `mistral` without a sliding window shorter than max_position_embeddings (null, as Mistral 7B
///   v0.2 and later; transformers' default when the key is absent is 4096).
///
/// Refused, each in one line naming config.json and the field: rope_scaling or rope_parameters
/// other than rope_type default (Llama 3.1's llama3, yarn, linear, dynamic, ...), a
/// partial_rotary_factor, head_dim other than hidden_size / num_attention_heads, hidden_act other
/// than silu, mlp_bias true, a sliding window, quantized weights. Other model types are refused
/// too, among them those with other layers under similar names: OLMo-2 and Qwen3 (norms on q and
/// k), Gemma (a scaled embedding, RMSNorm of 1 + w, GeGLU), Phi-3 (fused qkv and gate/up tensors).
extension HuggingFaceModel {
    /// The Llama family's model types Baton reads.
    public static let llamaFamilyTypes = ["llama", "qwen2", "mistral"]

    /// Why some model types that look like the family are not it.
    static let otherLayers: [String: String] = [
        "olmo2": "OLMo-2 normalises q and k, and after each sublayer", "qwen3": "Qwen3 normalises q and k",
        "olmo": "OLMo's LayerNorm has no weights", "gemma": "Gemma scales its embedding and uses GeGLU",
        "gemma2": "Gemma 2 scales its embedding, uses GeGLU and soft-caps logits",
        "phi3": "Phi-3 stores qkv and gate/up fused", "mixtral": "Mixtral is a mixture of experts",
    ]

    static func llamaConfig(_ file: HuggingFaceConfigFile, type: String) throws -> GPTConfig {
        if file.isSet("quantization_config") {
            throw file.fail("quantization_config: quantized weights; Baton reads float32, bfloat16 or float16 weights")
        }
        let activation = file.string("hidden_act") ?? "silu"
        guard activation == "silu" else { throw file.fail("hidden_act \(activation); Baton's SwiGLU uses silu") }
        let channels = try file.integer("hidden_size"), heads = try file.integer("num_attention_heads")
        if let headSize = try file.optionalInteger("head_dim"), headSize * heads != channels {
            throw file.fail(
                "head_dim \(headSize) is not hidden_size / num_attention_heads (\(channels) / \(heads)); Baton's "
                    + "heads are hidden_size / num_attention_heads wide")
        }
        if file.bool("mlp_bias") == true { throw file.fail("mlp_bias true; Baton's SwiGLU has no biases") }
        if type != "qwen2", file.bool("attention_bias") == true {
            throw file.fail(
                "attention_bias true (biases on q, k, v and o_proj); Baton's Llama family has biases on q, k and v "
                    + "only (as qwen2)")
        }
        // Rotary embeddings: unscaled, over the whole head, at one base.
        var theta = try file.number("rope_theta")
        for key in ["rope_scaling", "rope_parameters"] where file.isSet(key) {
            guard let rope = file.json[key] as? [String: Any] else { throw file.fail("\(key) is not an object") }
            let kind = rope["rope_type"] as? String ?? rope["type"] as? String ?? "default"
            guard kind == "default" else {
                throw file.fail("\(key) rope_type \(kind); Baton's rotary embeddings are unscaled (rope_type default)")
            }
            if let factor = rope["partial_rotary_factor"] as? Double, factor != 1 {
                throw file.fail(
                    "\(key) partial_rotary_factor \(factor); Baton's rotary embeddings turn the whole head")
            }
            if let base = rope["rope_theta"] as? Double {
                if let theta, theta != base {
                    throw file.fail("rope_theta \(theta) and \(key) rope_theta \(base) differ")
                }
                theta = base
            }
        }
        if let factor = try file.number("partial_rotary_factor"), factor != 1 {
            throw file.fail("partial_rotary_factor \(factor); Baton's rotary embeddings turn the whole head")
        }
        // Attention over every earlier position.
        let maxPositions = try file.integer("max_position_embeddings")
        if file.bool("use_sliding_window") == true {
            throw file.fail("use_sliding_window true; Baton attends to every earlier position")
        }
        if let kinds = file.json["layer_types"] as? [Any],
            let other = kinds.first(where: { $0 as? String != "full_attention" })
        {
            throw file.fail("layer_types has \(other); Baton attends to every earlier position (full_attention)")
        }
        if type == "mistral" {
            let window = file.json["sliding_window"] == nil ? 4096 : try file.optionalInteger("sliding_window")
            if let window, window < maxPositions {
                throw file.fail(
                    "sliding_window \(window) (below max_position_embeddings \(maxPositions)); Baton attends to every "
                        + "earlier position")
            }
        }
        var config = GPTConfig(
            contextLength: maxPositions, vocabularySize: try file.integer("vocab_size"),
            layers: try file.integer("num_hidden_layers"), heads: heads, channels: channels)
        config.architecture = .llama
        config.kvHeads = try file.optionalInteger("num_key_value_heads") ?? heads
        config.intermediateSize = try file.integer("intermediate_size")
        config.ropeTheta = Float(theta ?? 10000)
        config.normEpsilon = Float(try file.number("rms_norm_eps") ?? 1e-6)
        config.tieEmbeddings = file.bool("tie_word_embeddings") ?? false
        config.attentionBias = type == "qwen2"
        try config.validate(file: file.url.path, key: \.llamaKey)
        return config
    }
}
