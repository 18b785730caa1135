/// Named model shapes (`--model NAME`), so a user need not remember them: GPT-2's four sizes as
/// OpenAI released them, and the Llama family's from the projects' published configs. Flags
/// given beside `--model` override its numbers.
public struct ModelPreset: Sendable {
    public let name: String
    /// Where the shape comes from.
    public let source: String
    public let config: GPTConfig

    /// Parameters the shape has (as checkpoints store them).
    public var parameterCount: Int { ParameterLayout(config: config).storedCount }

    public static let all: [ModelPreset] = [
        gpt2("gpt2", layers: 12, heads: 12, channels: 768),
        gpt2("gpt2-medium", layers: 24, heads: 16, channels: 1024),
        gpt2("gpt2-large", layers: 36, heads: 20, channels: 1280),
        gpt2("gpt2-xl", layers: 48, heads: 25, channels: 1600),
        // Small enough to train on a CPU in minutes, with data/llama-tokenizer's 4,096 tokens.
        llama(
            "llama-tiny", source: "Baton's CPU example", vocabulary: 4096, context: 256, layers: 4, heads: 8,
            kvHeads: 4, channels: 256, theta: 10000, tied: true),
        // minimind2-small (MiniMindConfig: hidden 512, 8 layers, 8 heads, 2 kv heads, intermediate
        // 64 * ceil(512 * 8/3 / 64) = 1408, rope_theta 1e6, tied, vocabulary 6,400, pretraining at 512 tokens).
        llama(
            "minimind-26m", source: "jingyaogong/minimind", vocabulary: 6400, context: 512, layers: 8, heads: 8,
            kvHeads: 2, channels: 512, theta: 1_000_000, tied: true),
        // HuggingFaceTB/SmolLM2-135M's config.json (trained at 2,048 tokens).
        llama(
            "smollm2-135m", source: "HuggingFaceTB/SmolLM2-135M", vocabulary: 49152, context: 2048, layers: 30,
            heads: 9, kvHeads: 3, channels: 576, intermediate: 1536, theta: 100_000, tied: true),
    ]

    public static func named(_ name: String) -> ModelPreset? { all.first { $0.name == name } }

    private static func gpt2(_ name: String, layers: Int, heads: Int, channels: Int) -> ModelPreset {
        ModelPreset(
            name: name, source: "OpenAI GPT-2",
            config: GPTConfig(
                contextLength: 1024, vocabularySize: 50257, layers: layers, heads: heads, channels: channels))
    }

    private static func llama(
        _ name: String, source: String, vocabulary: Int, context: Int, layers: Int, heads: Int, kvHeads: Int,
        channels: Int, intermediate: Int? = nil, theta: Float, tied: Bool
    ) -> ModelPreset {
        var config = GPTConfig(
            contextLength: context, vocabularySize: vocabulary, layers: layers, heads: heads, channels: channels)
        config.architecture = .llama
        config.kvHeads = kvHeads
        config.intermediateSize = intermediate
        config.ropeTheta = theta
        config.tieEmbeddings = tied
        return ModelPreset(name: name, source: source, config: config)
    }
}
