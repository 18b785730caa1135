import Baton
import Foundation

/// One input through one untrusted-file reader, and on through what a successful read leads to.
/// Shared by the libFuzzer targets (Sources/baton-fuzz) and the seeded mutation test.
enum FuzzTargets {
    static let names = ["safetensors", "state", "shard", "latest", "tokenizer"]

    /// The shape of the model scripts/checks/fuzz trains for its seed checkpoint, and of the model the
    /// safetensors target loads into: the same, so that the unmutated seed loads and mutations of
    /// it reach tensor loading (a test holds scripts/checks/fuzz to `seedTrainFlags`).
    static let seedModel = GPTConfig(contextLength: 8, vocabularySize: 256, layers: 1, heads: 2, channels: 4)
    static var seedTrainFlags: String {
        "--layers \(seedModel.layers) --heads \(seedModel.heads) --embd \(seedModel.channels) --seq-len "
            + "\(seedModel.contextLength) --vocab-size \(seedModel.vocabularySize)"
    }

    nonisolated(unsafe) static var model: GPT? = try? GPT(config: seedModel, device: Device.cpu(threads: 1))
    /// Inputs that parsed as safetensors and were handed to the model loader, and those it loaded.
    nonisolated(unsafe) static var reachedLoading = 0
    nonisolated(unsafe) static var loaded = 0

    /// Returns true when the reader accepted the input.
    @discardableResult
    static func run(target: String, input: Data, scratch: URL) -> Bool {
        do {
            switch target {
            case "safetensors":
                let url = scratch.appendingPathComponent("input.safetensors")
                try input.write(to: url)
                let file = try SafeTensors.read(url)
                if let model {
                    reachedLoading += 1
                    try ModelWeights.load(file, into: model)
                    loaded += 1
                }
                _ = try? ModelWeights.config(of: file)
            case "state":
                let state = try CheckpointState.decode(input, path: "input")
                _ = state.trainingState
                try state.config.validate()
            case "shard":
                let url = scratch.appendingPathComponent("input.bin")
                try input.write(to: url)
                let shard = try TokenShard(url: url, vocabularySize: 256)
                if shard.tokenCount > 0 { _ = try shard.tokens(start: 0, count: min(shard.tokenCount, 4096)) }
            case "tokenizer":
                // A tokenizer.json, read, then encoding and decoding hostile text both ways.
                let folder = scratch.appendingPathComponent("tokenizer")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                try input.write(to: folder.appendingPathComponent("tokenizer.json"))
                let tokenizer = try BPETokenizer(folder: folder)
                let text = "Of Man's 'S <|endoftext|><|begin_of_text|> 12345 e\u{301} \u{212B} 中文 😀\t\n\n  x"
                for mode in [BPETokenizer.SpecialTokens.asText, .matched] {
                    _ = tokenizer.decode(tokenizer.encode(text, specialTokens: mode))
                }
            case "latest":
                let run = scratch.appendingPathComponent("run")
                let store = CheckpointStore(runFolder: run)
                try FileManager.default.createDirectory(at: store.folder, withIntermediateDirectories: true)
                try input.write(to: store.latestURL)
                // resolve must cope with whatever latest says; the input is accepted when it
                // names a step folder.
                _ = try store.resolve(.auto, log: { _ in })
                guard store.latestName() != nil else { return false }
            default:
                return false
            }
            return true
        } catch {
            return false
        }
    }
}
