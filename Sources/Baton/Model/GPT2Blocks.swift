/// GPT-2's blocks: learned position embeddings, pre-LayerNorm blocks with causal self-attention
/// and a 4x tanh-GELU MLP, a final LayerNorm, and an LM head tied to the token embedding.
extension GPT {
    typealias Affine = ParameterTensors<Tensor>.Affine

    func gpt2ForwardToLogits(_ a: Activations) throws {
        let B = a.B, T = a.T, C = config.channels, NH = config.heads, N = B * T, V = config.paddedVocabularySize
        let d = device, w = ParameterTensors(layout: layout, buffer: parameters)
        let matmulTensors = ParameterTensors(layout: layout, buffer: matmulWeights)
        try d.encoderForward(
            out: a.encoded, tokens: a.inputs, wte: w.tokenEmbedding, wpe: w.positionEmbedding, B: B, T: T, C: C)
        try gpt2NormBefore(block: 0, a, w)
        for (index, l) in a.layers.enumerated() {
            let matmul = matmulTensors.blocks[index]
            try linear(out: l.qkv, input: l.ln1, layer: matmul.qkv, N: N, inFeatures: C, outFeatures: 3 * C)
            try d.attentionForward(
                out: l.attentionOutput, saved: l.attentionSaved, qkv: l.qkv, scratch: a.attentionScratch, B: B, T: T,
                C: C, NH: NH, KV: NH)
            try linear(
                out: l.attentionProjection, input: l.attentionOutput, layer: matmul.attentionProjection, N: N,
                inFeatures: C, outFeatures: C)
            try gpt2NormInside(block: index, a, w)
            try gpt2MLPUp(block: index, a, matmulTensors)
            try linear(
                out: l.fcProjection, input: l.fcGelu, layer: matmul.mlpProjection, N: N, inFeatures: 4 * C,
                outFeatures: C)
            try gpt2NormBefore(block: index + 1, a, w)
        }
        // Tied LM head: logits = lnf @ wte^T, over the padded rows (their logits are zero, and masked).
        try d.matmul(
            c: a.logits, a: a.lnf, b: matmulTensors.tokenEmbedding, M: N, N: V, K: C,
            transposeA: false, transposeB: true, beta: 0)
    }

    /// The LayerNorm before block `index`, ln_1 (index == layers: ln_f, after the last block): the
    /// first from the embeddings alone, each other fused with the residual add that ends the block
    /// before it. The forward pass makes each; the backward pass makes ln_1 again where it is
    /// recomputed, with the same op on the same operands, so the same bits (the residual, mean and
    /// rstd it writes again are the ones they hold).
    private func gpt2NormBefore(block index: Int, _ a: Activations, _ w: ParameterTensors<Tensor>) throws {
        let N = a.B * a.T, C = config.channels
        let isFinal = index == a.layers.count
        let out = isFinal ? a.lnf : a.layers[index].ln1, mean = isFinal ? a.lnfMean : a.layers[index].ln1Mean,
            rstd = isFinal ? a.lnfRstd : a.layers[index].ln1Rstd, norm = isFinal ? w.finalNorm : w.blocks[index].ln1
        guard index > 0 else {
            try device.layernormForward(
                out: out, mean: mean, rstd: rstd, input: a.encoded, weight: norm.weight, bias: norm.bias, N: N, C: C)
            return
        }
        let before = a.layers[index - 1]
        try device.residualLayernormForward(
            residual: before.residualAfterMLP, out: out, mean: mean, rstd: rstd, a: before.residualAfterAttention,
            b: before.fcProjection, weight: norm.weight, bias: norm.bias, N: N, C: C)
    }

    /// Block `index`'s ln_2, fused with the residual add after its attention; made again in the
    /// backward pass where recomputed, as gpt2NormBefore.
    private func gpt2NormInside(block index: Int, _ a: Activations, _ w: ParameterTensors<Tensor>) throws {
        let l = a.layers[index], norm = w.blocks[index].ln2
        let residualIn = index == 0 ? a.encoded : a.layers[index - 1].residualAfterMLP
        try device.residualLayernormForward(
            residual: l.residualAfterAttention, out: l.ln2, mean: l.ln2Mean, rstd: l.ln2Rstd, a: residualIn,
            b: l.attentionProjection, weight: norm.weight, bias: norm.bias, N: a.B * a.T, C: config.channels)
    }

    /// Block `index`'s MLP up to its GELU: fc and GELU(fc) in one op. Where GELU's output is
    /// recomputed, the backward pass runs this op again whole (the same operands, so the same bits,
    /// fc's included): GELU is taken of the unrounded sum inside the op (in bf16, and in
    /// cuBLASLt's epilogue on a GPU), so it cannot be had again from the stored fc.
    private func gpt2MLPUp(block index: Int, _ a: Activations, _ matmulTensors: ParameterTensors<Tensor>) throws {
        let l = a.layers[index], C = config.channels
        try linear(
            out: l.fc, geluOut: l.fcGelu, input: l.ln2, layer: matmulTensors.blocks[index].fc, N: a.B * a.T,
            inFeatures: C,
            outFeatures: 4 * C)
    }

    /// out[N, outFeatures] = input[N, inFeatures] @ weight[inFeatures, outFeatures] + bias, and
    /// geluOut = GELU(out) where asked: one op (on a GPU, the bias and GELU in cuBLASLt's epilogue).
    private func linear(
        out: Tensor, geluOut: Tensor? = nil, input: Tensor, layer: Affine, N: Int, inFeatures: Int,
        outFeatures: Int
    ) throws {
        try device.linearForward(
            out: out, geluOut: geluOut, input: input, weight: layer.weight, bias: layer.bias, N: N,
            inFeatures: inFeatures, outFeatures: outFeatures)
    }

    /// Given dout [N, outFeatures], accumulates the weight and bias gradients into `gradient` and
    /// writes dinput (unless nil: the caller computes it another way).
    private func linearBackward(
        dinput: Tensor?, dout: Tensor, input: Tensor, layer: Affine, gradient: Affine, N: Int,
        inFeatures: Int, outFeatures: Int
    ) throws {
        if let dinput {
            try device.matmul(
                c: dinput, a: dout, b: layer.weight, M: N, N: inFeatures, K: outFeatures,
                transposeA: false, transposeB: true, beta: 0)
        }
        try device.matmul(
            c: gradient.weight, a: input, b: dout, M: inFeatures, N: outFeatures, K: N,
            transposeA: true, transposeB: false, beta: 1)
        try device.biasBackward(dbias: gradient.bias, dout: dout, N: N, OC: outFeatures)
    }

    func gpt2Backward(_ a: Activations) throws {
        let B = a.B, T = a.T, C = config.channels, NH = config.heads, N = B * T, V = config.paddedVocabularySize
        let d = device, w = ParameterTensors(layout: layout, buffer: parameters),
            g = ParameterTensors(layout: layout, buffer: gradients)
        let matmulTensors = ParameterTensors(layout: layout, buffer: matmulWeights)
        let dlogits = a.logits
        // Tied head: dlnf = dlogits @ wte; dwte += dlogits^T @ lnf (the padded columns' dlogits
        // are zero, so the padded rows add nothing and get no gradient).
        try d.matmul(
            c: a.dln, a: dlogits, b: matmulTensors.tokenEmbedding, M: N, N: C, K: V,
            transposeA: false, transposeB: false, beta: 0)
        try d.matmul(
            c: g.tokenEmbedding, a: dlogits, b: a.lnf, M: V, N: C, K: N,
            transposeA: true, transposeB: false, beta: 1)
        // The residual stream's gradient lives in one buffer; each LayerNorm backward adds into it,
        // and (in bf16) writes the sum's bf16 copy too, for the matmuls and bias gradients that
        // read it next: dmatmul is where they read it (dresidual itself in float32).
        try d.fill(a.dresidual, with: 0)
        let copy = a.dresidualActivation.element == a.dresidual.element ? nil : a.dresidualActivation,
            dmatmul = a.dresidualActivation
        let lastResidual = a.layers.last?.residualAfterMLP ?? a.encoded
        try d.layernormBackward(
            dinput: a.dresidual, dinputActivation: copy, dweight: g.finalNorm.weight,
            dbias: g.finalNorm.bias, dout: a.dln, input: lastResidual, weight: w.finalNorm.weight,
            mean: a.lnfMean, rstd: a.lnfRstd, N: N, C: C)
        for index in stride(from: config.layers - 1, through: 0, by: -1) {
            let l = a.layers[index], block = w.blocks[index], matmul = matmulTensors.blocks[index],
                gradient = g.blocks[index]
            let residualIn = index == 0 ? a.encoded : a.layers[index - 1].residualAfterMLP
            // The shared buffers hold the last block's values: this block's, made again (RecomputeLevel).
            if a.recompute.recomputesNorms { try gpt2NormInside(block: index, a, w) }
            if a.recompute.recomputesActivation { try gpt2MLPUp(block: index, a, matmulTensors) }
            // The MLP's output projection and its GELU, backwards: dfc in one op, then the weight's and bias's
            // gradients.
            let dmlp = dmatmul
            try d.matmulGeluBackward(
                dinput: a.dfc, dout: dmlp, weight: matmul.mlpProjection.weight, preGelu: l.fc, N: N,
                inFeatures: 4 * C, outFeatures: C)
            try linearBackward(
                dinput: nil, dout: dmlp, input: l.fcGelu, layer: matmul.mlpProjection, gradient: gradient.mlpProjection,
                N: N,
                inFeatures: 4 * C, outFeatures: C)
            try linearBackward(
                dinput: a.dln, dout: a.dfc, input: l.ln2, layer: matmul.fc, gradient: gradient.fc, N: N,
                inFeatures: C, outFeatures: 4 * C)
            try d.layernormBackward(
                dinput: a.dresidual, dinputActivation: copy, dweight: gradient.ln2.weight, dbias: gradient.ln2.bias,
                dout: a.dln, input: l.residualAfterAttention, weight: block.ln2.weight,
                mean: l.ln2Mean, rstd: l.ln2Rstd, N: N, C: C)
            try linearBackward(
                dinput: a.dattentionOutput, dout: dmatmul, input: l.attentionOutput, layer: matmul.attentionProjection,
                gradient: gradient.attentionProjection, N: N, inFeatures: C, outFeatures: C)
            try d.attentionBackward(
                dqkv: a.dqkv, scratch: a.attentionScratch, dout: a.dattentionOutput, qkv: l.qkv, out: l.attentionOutput,
                saved: l.attentionSaved,
                B: B, T: T, C: C, NH: NH, KV: NH)
            if a.recompute.recomputesNorms { try gpt2NormBefore(block: index, a, w) }
            try linearBackward(
                dinput: a.dln, dout: a.dqkv, input: l.ln1, layer: matmul.qkv, gradient: gradient.qkv, N: N,
                inFeatures: C, outFeatures: 3 * C)
            // The first block's ln_1 feeds only the embedding's gradient, which reads float32: no copy.
            try d.layernormBackward(
                dinput: a.dresidual, dinputActivation: index == 0 ? nil : copy, dweight: gradient.ln1.weight,
                dbias: gradient.ln1.bias, dout: a.dln, input: residualIn, weight: block.ln1.weight,
                mean: l.ln1Mean, rstd: l.ln1Rstd, N: N, C: C)
        }
        try d.encoderBackward(
            dwte: g.tokenEmbedding, dwpe: g.positionEmbedding,
            dout: a.dresidual, tokens: a.inputs, buckets: a.buckets, B: B, T: T, C: C)
    }
}
