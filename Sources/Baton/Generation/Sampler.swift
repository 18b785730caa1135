import Foundation

/// Autoregressive sampling with temperature and top-k.
public enum Sampler {
    /// The most tokens one `baton sample` generates (--length): each token is a forward pass over
    /// a full context window, so a bound keeps a mistyped length from running until killed.
    public static let maximumLength = 1_000_000

    /// Generates up to `length` tokens after `prompt` (or after `start` when it is empty), and
    /// stops early after generating one of `stopAt`.
    public static func generate(
        model: GPT, prompt: [Int32], length: Int, temperature: Float, topK: Int, seed: UInt64,
        start: Int32 = 10, stopAt: Set<Int32> = [], onToken: (Int32) -> Void = { _ in }
    ) throws -> [Int32] {
        let T = model.config.contextLength, V = model.config.vocabularySize
        var tokens = prompt.isEmpty ? [start] : prompt
        var generator = RandomGenerator(seed: seed)
        var generated: [Int32] = []
        for _ in 0..<length {
            // Always run a full window (padded at the end) so the activations are allocated once;
            // attention is causal, so padding after the last real token cannot change its logits.
            let window = Array(tokens.suffix(T))
            let inputs = window + [Int32](repeating: 0, count: T - window.count)
            let logits = try model.logits(inputs: inputs, B: 1, T: T)
            let row = Array(logits[((window.count - 1) * V)..<(window.count * V)])
            let next = Int32(pick(from: row, temperature: temperature, topK: topK, generator: &generator))
            tokens.append(next)
            generated.append(next)
            onToken(next)
            if stopAt.contains(next) { break }
        }
        return generated
    }

    /// Samples an index from logits; temperature 0 means greedy.
    static func pick(from logits: [Float], temperature: Float, topK: Int, generator: inout RandomGenerator) -> Int {
        if temperature <= 0 { return logits.indices.max { logits[$0] < logits[$1] }! }
        var candidates = Array(logits.indices)
        if topK > 0 && topK < logits.count {
            candidates.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            candidates = Array(candidates.prefix(topK))
        }
        let maxLogit = candidates.map { logits[$0] }.max()!
        let weights = candidates.map { exp(Double(logits[$0] - maxLogit) / Double(temperature)) }
        var threshold = generator.nextUniform() * weights.reduce(0, +)
        for (candidate, weight) in zip(candidates, weights) {
            threshold -= weight
            if threshold < 0 { return candidate }
        }
        return candidates.last!
    }
}
