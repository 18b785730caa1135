import CBatonABI

/// How products compute (baton_precision in baton_backend.h): fp32; tf32 (matmul and attention
/// operands rounded to TF32, float32 sums: TF32 tensor cores); bf16 (activations stored in
/// bfloat16 and a bf16 copy of the weights for the matmuls, float32 sums: bf16 tensor cores).
/// Softmax, LayerNorm, GELU, the loss and AdamW compute in float32 in every mode; the residual
/// stream, the weights, their gradients and AdamW's moments are float32 in every mode, so
/// checkpoints are the same in every precision. The CPU rounds at the same points as a GPU, so a
/// bf16 run on the CPU is the GPU's twin.
public enum Precision: String, CaseIterable, Codable, Sendable {
    case fp32, tf32, bf16

    var cValue: Int32 {
        switch self {
        case .fp32: return Int32(BATON_PRECISION_FP32.rawValue)
        case .tf32: return Int32(BATON_PRECISION_TF32.rawValue)
        case .bf16: return Int32(BATON_PRECISION_BF16.rawValue)
        }
    }

    public var summary: String {
        switch self {
        case .fp32: return "fp32"
        case .tf32: return "tf32 (matmul and attention operands rounded to TF32, float32 sums)"
        case .bf16:
            return
                "bf16 (activations and a copy of the weights in bfloat16 for the matmuls and attention, float32 "
                + "sums; float32 weights, gradients, moments and residual stream)"
        }
    }
}

extension Precision {
    /// A run's precision when --precision is not given: bf16 on a GPU that has bf16 tensor cores
    /// (sm_80 and newer), where it is what a user with a GPU runs; fp32 on the CPU, where bf16 is
    /// the GPU's twin for parity, slower than fp32 (docs/precision.md).
    public static func defaultFor(_ device: Device) -> Precision {
        device.kind == .cuda && device.supports(.bf16) ? .bf16 : .fp32
    }
}

/// Which attention kernels a device runs (baton_attention, fixed when it opens): flash attention
/// where the device has it and the head fits (the default; no T x T matrix), or the scores kept in
/// memory everywhere, as the CPU always keeps them (for comparing both on one GPU).
public enum AttentionKernel: String, CaseIterable, Sendable {
    case flash, materialized

    var cValue: Int32 {
        switch self {
        case .flash: return Int32(BATON_ATTENTION_FLASH.rawValue)
        case .materialized: return Int32(BATON_ATTENTION_MATERIALIZED.rawValue)
        }
    }
}
