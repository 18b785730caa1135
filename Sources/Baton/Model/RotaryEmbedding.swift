import Foundation

/// Rotary position embedding's table, computed as transformers' LlamaRotaryEmbedding computes it
/// in float32: inv_freq[i] = 1 / theta^(2i / HS), the angle position * inv_freq[i] rounded to
/// float32, then its cosine and sine. Made on the host once for a sequence length, so both
/// backends read the same numbers (the rope ops take it; see baton_backend.h).
enum RotaryEmbedding {
    /// [length, headSize / 2, 2]: (cos, sin) of each position's angle for each pair.
    static func table(length: Int, headSize: Int, theta: Float) -> [Float] {
        let half = headSize / 2
        let inverseFrequencies = (0..<half).map { i in 1 / Foundation.powf(theta, Float(2 * i) / Float(headSize)) }
        var table = [Float](repeating: 0, count: length * headSize)
        for position in 0..<length {
            for i in 0..<half {
                let angle = Double(Float(position) * inverseFrequencies[i])
                table[(position * half + i) * 2] = Float(Foundation.cos(angle))
                table[(position * half + i) * 2 + 1] = Float(Foundation.sin(angle))
            }
        }
        return table
    }
}
