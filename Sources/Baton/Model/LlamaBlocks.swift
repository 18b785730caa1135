/// The Llama family's blocks, as transformers' LlamaForCausalLM computes them: token embedding
/// (no position table), then per block RMSNorm, q/k/v projections (biases optional, as Qwen2),
/// rotary embeddings on q and k, causal attention where each group of query heads shares one
/// key/value head, the output projection, the residual add fused with the next RMSNorm, and the
/// SwiGLU MLP (down(silu(gate(x)) * up(x))); a final RMSNorm and the LM head (tied or not). Every
/// linear layer's weight is nn.Linear's [out, in].
extension GPT {
    func llamaForwardToLogits(_ a: Activations) throws {
        let B = a.B, T = a.T, C = config.channels, NH = config.heads, KV = config.keyValueHeads, HS = config.headSize
        let N = B * T, I = config.hiddenSize, W = config.qkvWidth
        let d = device, w = LlamaParameterTensors(layout: layout, buffer: parameters)
        let m = LlamaParameterTensors(layout: layout, buffer: matmulWeights), extra = a.llama!
        try d.encoderForward(out: a.encoded, tokens: a.inputs, wte: w.tokenEmbedding, wpe: nil, B: B, T: T, C: C)
        try llamaNormBefore(block: 0, a, w)
        for (index, l) in a.llamaLayers.enumerated() {
            let matmul = m.blocks[index]
            try d.linearForward(
                out: l.qkv, input: l.ln1, weight: matmul.qkv, bias: matmul.qkvBias, N: N, inFeatures: C,
                outFeatures: W, transposedWeight: true)
            try d.rope(l.qkv, freqs: extra.rope, B: B, T: T, width: W, heads: NH + KV, HS: HS)
            // Each query head reads its key/value head (h / (NH / KV)) in place.
            try d.attentionForward(
                out: l.attentionOutput, saved: l.attentionSaved, qkv: l.qkv, scratch: a.attentionScratch, B: B, T: T,
                C: C, NH: NH, KV: KV)
            try d.linearForward(
                out: l.attentionProjection, input: l.attentionOutput, weight: matmul.attentionOutput, bias: nil, N: N,
                inFeatures: C, outFeatures: C, transposedWeight: true)
            try llamaNormInside(block: index, a, w)
            try d.linearForward(
                out: l.gateUp, input: l.ln2, weight: matmul.gateUp, bias: nil, N: N, inFeatures: C, outFeatures: 2 * I,
                transposedWeight: true)
            try llamaSwiGLU(block: index, a)
            try d.linearForward(
                out: l.down, input: l.hidden, weight: matmul.down, bias: nil, N: N, inFeatures: I, outFeatures: C,
                transposedWeight: true)
            try llamaNormBefore(block: index + 1, a, w)
        }
        // LM head: logits = lnf @ head^T over the padded rows (zero, and masked).
        try d.matmul(
            c: a.logits, a: a.lnf, b: m.head, M: N, N: config.paddedVocabularySize, K: C, transposeA: false,
            transposeB: true, beta: 0)
    }

    /// The RMSNorm before block `index` (index == layers: the final norm): the first from the
    /// embeddings alone, each other fused with the residual add that ends the block before it. The
    /// forward pass makes each; the backward pass makes the input norm's output again where it is
    /// recomputed (RecomputeLevel), with the same op on the same operands, so the same bits (the
    /// residual and rstd it writes again are the ones they hold).
    private func llamaNormBefore(block index: Int, _ a: Activations, _ w: LlamaParameterTensors<Tensor>) throws {
        let N = a.B * a.T, C = config.channels, eps = config.normEpsilon
        let isFinal = index == a.llamaLayers.count
        let out = isFinal ? a.lnf : a.llamaLayers[index].ln1, rstd = isFinal ? a.lnfRstd : a.llamaLayers[index].ln1Rstd
        let weight = isFinal ? w.finalNorm : w.blocks[index].inputNorm
        guard index > 0 else {
            try device.rmsnormForward(out: out, rstd: rstd, input: a.encoded, weight: weight, N: N, C: C, eps: eps)
            return
        }
        let before = a.llamaLayers[index - 1]
        try device.residualRmsnormForward(
            residual: before.residualAfterMLP, out: out, rstd: rstd, a: before.residualAfterAttention, b: before.down,
            weight: weight, N: N, C: C, eps: eps)
    }

    /// Block `index`'s post-attention RMSNorm, fused with the residual add after its attention;
    /// made again in the backward pass where recomputed, as llamaNormBefore.
    private func llamaNormInside(block index: Int, _ a: Activations, _ w: LlamaParameterTensors<Tensor>) throws {
        let l = a.llamaLayers[index]
        let residualIn = index == 0 ? a.encoded : a.llamaLayers[index - 1].residualAfterMLP
        try device.residualRmsnormForward(
            residual: l.residualAfterAttention, out: l.ln2, rstd: l.ln2Rstd, a: residualIn, b: l.attentionProjection,
            weight: w.blocks[index].postAttentionNorm, N: a.B * a.T, C: config.channels, eps: config.normEpsilon)
    }

    /// Block `index`'s SwiGLU output from its gate and up (kept); made again in the backward pass
    /// where recomputed.
    private func llamaSwiGLU(block index: Int, _ a: Activations) throws {
        let l = a.llamaLayers[index]
        try device.swigluForward(out: l.hidden, input: l.gateUp, N: a.B * a.T, H: config.hiddenSize)
    }

    /// The weight gradient of a linear layer stored [out, in]: gradient += dout^T @ input.
    private func accumulateWeightGradient(
        _ gradient: Tensor, dout: Tensor, input: Tensor, N: Int, out: Int, in: Int
    )
        throws
    {
        try device.matmul(
            c: gradient, a: dout, b: input, M: out, N: `in`, K: N, transposeA: true, transposeB: false, beta: 1)
    }

    /// dinput = dout @ weight, for a weight stored [out, in].
    private func inputGradient(_ dinput: Tensor, dout: Tensor, weight: Tensor, N: Int, out: Int, in: Int) throws {
        try device.matmul(
            c: dinput, a: dout, b: weight, M: N, N: `in`, K: out, transposeA: false, transposeB: false, beta: 0)
    }

    func llamaBackward(_ a: Activations) throws {
        let B = a.B, T = a.T, C = config.channels, NH = config.heads, KV = config.keyValueHeads, HS = config.headSize
        let N = B * T, I = config.hiddenSize, W = config.qkvWidth, V = config.paddedVocabularySize
        let d = device, w = LlamaParameterTensors(layout: layout, buffer: parameters),
            g = LlamaParameterTensors(layout: layout, buffer: gradients)
        let m = LlamaParameterTensors(layout: layout, buffer: matmulWeights), extra = a.llama!
        // The LM head: dlnf = dlogits @ head; dhead += dlogits^T @ lnf (into wte when tied).
        try inputGradient(a.dln, dout: a.logits, weight: m.head, N: N, out: V, in: C)
        try accumulateWeightGradient(g.head, dout: a.logits, input: a.lnf, N: N, out: V, in: C)
        // The residual stream's gradient, and its copy for the matmuls in bf16, as in GPT-2's backward.
        try d.fill(a.dresidual, with: 0)
        let copy = a.dresidualActivation.element == a.dresidual.element ? nil : a.dresidualActivation,
            dmatmul = a.dresidualActivation
        try d.rmsnormBackward(
            dinput: a.dresidual, dinputActivation: copy, dweight: g.finalNorm, dout: a.dln,
            input: a.llamaLayers.last!.residualAfterMLP, weight: w.finalNorm, rstd: a.lnfRstd, N: N, C: C)
        for index in stride(from: config.layers - 1, through: 0, by: -1) {
            let l = a.llamaLayers[index], matmul = m.blocks[index], gradient = g.blocks[index]
            let residualIn = index == 0 ? a.encoded : a.llamaLayers[index - 1].residualAfterMLP
            // The shared buffers hold the last block's values: this block's, made again (RecomputeLevel).
            if a.recompute.recomputesActivation { try llamaSwiGLU(block: index, a) }
            if a.recompute.recomputesNorms { try llamaNormInside(block: index, a, w) }
            // The MLP: down, SwiGLU, gate and up.
            try inputGradient(extra.dhidden, dout: dmatmul, weight: matmul.down, N: N, out: C, in: I)
            try accumulateWeightGradient(gradient.down, dout: dmatmul, input: l.hidden, N: N, out: C, in: I)
            try d.swigluBackward(dinput: a.dfc, dout: extra.dhidden, input: l.gateUp, N: N, H: I)
            try inputGradient(a.dln, dout: a.dfc, weight: matmul.gateUp, N: N, out: 2 * I, in: C)
            try accumulateWeightGradient(gradient.gateUp, dout: a.dfc, input: l.ln2, N: N, out: 2 * I, in: C)
            try d.rmsnormBackward(
                dinput: a.dresidual, dinputActivation: copy, dweight: gradient.postAttentionNorm, dout: a.dln,
                input: l.residualAfterAttention, weight: w.blocks[index].postAttentionNorm, rstd: l.ln2Rstd, N: N,
                C: C)
            // Attention: the output projection, attention itself (each key/value head's gradients
            // summed over its group of query heads), rotary undone.
            try inputGradient(a.dattentionOutput, dout: dmatmul, weight: matmul.attentionOutput, N: N, out: C, in: C)
            try accumulateWeightGradient(
                gradient.attentionOutput, dout: dmatmul, input: l.attentionOutput, N: N, out: C, in: C)
            try d.attentionBackward(
                dqkv: a.dqkv, scratch: a.attentionScratch, dout: a.dattentionOutput, qkv: l.qkv, out: l.attentionOutput,
                saved: l.attentionSaved, B: B, T: T, C: C, NH: NH, KV: KV)
            try d.rope(a.dqkv, freqs: extra.rope, B: B, T: T, width: W, heads: NH + KV, HS: HS, backward: true)
            try inputGradient(a.dln, dout: a.dqkv, weight: matmul.qkv, N: N, out: W, in: C)
            if a.recompute.recomputesNorms { try llamaNormBefore(block: index, a, w) }
            try accumulateWeightGradient(gradient.qkv, dout: a.dqkv, input: l.ln1, N: N, out: W, in: C)
            if let bias = gradient.qkvBias { try d.biasBackward(dbias: bias, dout: a.dqkv, N: N, OC: W) }
            // The first block's norm feeds only the embedding's gradient, which reads float32: no copy.
            try d.rmsnormBackward(
                dinput: a.dresidual, dinputActivation: index == 0 ? nil : copy, dweight: gradient.inputNorm,
                dout: a.dln, input: residualIn, weight: w.blocks[index].inputNorm, rstd: l.ln1Rstd, N: N, C: C)
        }
        try d.encoderBackward(
            dwte: g.tokenEmbedding, dwpe: nil, dout: a.dresidual, tokens: a.inputs, buckets: a.buckets, B: B, T: T,
            C: C)
    }
}
