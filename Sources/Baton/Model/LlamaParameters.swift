/// The Llama family's parameter tensors, declared once (as `ParameterTensors` declares GPT-2's),
/// named and shaped as in transformers' LlamaForCausalLM / Qwen2ForCausalLM: nn.Linear weights are
/// (out_features, in_features). The flat buffer puts q, k and v (and their biases) one after
/// another, and gate and up, so each group is one [out, in] matrix read by one matmul: `span`
/// joins two declared tensors into the view that runs from the first to the end of the second.
struct LlamaParameterTensors<T> {
    struct Block {
        let inputNorm: T
        /// q_proj, k_proj, v_proj as one [(NH + 2 KV) HS, C] matrix, and their biases (Qwen2) as one vector.
        let qkv: T
        let qkvBias: T?
        let attentionOutput: T
        let postAttentionNorm: T
        /// gate_proj and up_proj as one [2 I, C] matrix.
        let gateUp: T
        let down: T
    }

    /// [paddedVocabularySize, C], as GPT-2's wte.
    let tokenEmbedding: T
    let blocks: [Block]
    let finalNorm: T
    /// The LM head [paddedVocabularySize, C]: the token embedding itself when tied.
    let head: T

    init(
        config: GPTConfig, tensor: (String, [Int], ParameterSpec.Role, Int) -> T, span: (T, T) -> T
    ) {
        let C = config.channels, HS = config.headSize, I = config.hiddenSize
        func linear(_ name: String, _ outFeatures: Int, _ inFeatures: Int) -> T {
            tensor(name + ".weight", [outFeatures, inFeatures], .linearWeight, outFeatures)
        }
        func norm(_ name: String) -> T { tensor(name + ".weight", [C], .normWeight, C) }
        tokenEmbedding = tensor(
            "model.embed_tokens.weight", [config.vocabularySize, C], .embedding, config.paddedVocabularySize)
        blocks = (0..<config.layers).map { layer in
            let p = "model.layers.\(layer)."
            let inputNorm = norm(p + "input_layernorm")
            let q = linear(p + "self_attn.q_proj", config.heads * HS, C)
            _ = linear(p + "self_attn.k_proj", config.keyValueHeads * HS, C)
            let v = linear(p + "self_attn.v_proj", config.keyValueHeads * HS, C)
            var qkvBias: T?
            if config.attentionBias {
                let qBias = tensor(p + "self_attn.q_proj.bias", [config.heads * HS], .bias, config.heads * HS)
                _ = tensor(p + "self_attn.k_proj.bias", [config.keyValueHeads * HS], .bias, config.keyValueHeads * HS)
                let vBias = tensor(
                    p + "self_attn.v_proj.bias", [config.keyValueHeads * HS], .bias, config.keyValueHeads * HS)
                qkvBias = span(qBias, vBias)
            }
            let attentionOutput = linear(p + "self_attn.o_proj", C, config.heads * HS)
            let postAttentionNorm = norm(p + "post_attention_layernorm")
            let gate = linear(p + "mlp.gate_proj", I, C)
            let up = linear(p + "mlp.up_proj", I, C)
            return Block(
                inputNorm: inputNorm, qkv: span(q, v), qkvBias: qkvBias, attentionOutput: attentionOutput,
                postAttentionNorm: postAttentionNorm, gateUp: span(gate, up), down: linear(p + "mlp.down_proj", C, I))
        }
        finalNorm = norm("model.norm")
        head =
            config.tiedEmbeddings
            ? tokenEmbedding
            : tensor("lm_head.weight", [config.vocabularySize, C], .linearWeight, config.paddedVocabularySize)
    }
}

extension LlamaParameterTensors where T == Tensor {
    /// Views of `buffer`, a flat buffer laid out as `layout` (float32 or the bf16 copy).
    init(layout: ParameterLayout, buffer: Tensor) {
        self.init(
            config: layout.config,
            tensor: { name, _, _, _ in layout.tensor(named: name, in: buffer, padding: true) },
            span: { first, last in
                precondition(first.buffer === last.buffer && last.offset >= first.offset, "span of two buffers")
                return Tensor(
                    buffer: first.buffer, offset: first.offset, count: last.offset + last.count - first.offset,
                    element: first.element)
            })
    }
}
