/// What the backward pass computes again instead of keeping from the forward pass (llm.c's `-r`):
/// memory against time, never the bits. A recomputed activation is one buffer shared by all the
/// layers (the forward pass writes each layer's into it in turn, and it is read only within that
/// layer), and the backward pass writes it again, just before it reads it, with the very op and
/// operands the forward pass used, which give the very same bits (GPT2Blocks.swift, LlamaBlocks.swift).
public enum RecomputeLevel: Int, Codable, Sendable, CaseIterable, Comparable {
    /// Every layer keeps every activation.
    case off = 0
    /// The MLP's activation: GPT-2's GELU output and the Llama family's SwiGLU output.
    case activation = 1
    /// That, and the outputs of both norms in each block (ln_1 and ln_2; the final norm is kept).
    case activationAndNorms = 2

    public static func < (a: RecomputeLevel, b: RecomputeLevel) -> Bool { a.rawValue < b.rawValue }

    /// Whether the MLP's activation (GELU's or SwiGLU's output) is one buffer, recomputed.
    var recomputesActivation: Bool { self >= .activation }
    /// Whether ln_1's and ln_2's outputs are one buffer each, recomputed.
    var recomputesNorms: Bool { self >= .activationAndNorms }
}
