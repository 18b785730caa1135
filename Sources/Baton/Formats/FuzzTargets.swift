import Foundation

/// One input through one untrusted-file reader, and on through what a successful read leads to.
/// Shared by the libFuzzer targets (Sources/baton-fuzz) and the seeded mutation test.
public enum FuzzTargets {
    public static let names = ["safetensors", "state", "shard", "latest"]

    /// A tiny model the safetensors target loads into, so a file that parses is also uploaded.
    nonisolated(unsafe) static var model: GPT? = try? GPT(config: GPTConfig(contextLength: 8, vocabularySize: 16, layers: 1, heads: 2, channels: 4),
                                                          device: Device.cpu(threads: 1))

    /// Returns true when the reader accepted the input.
    @discardableResult
    public static func run(target: String, input: Data, scratch: URL) -> Bool {
        do {
            switch target {
            case "safetensors":
                let url = scratch.appendingPathComponent("input.safetensors")
                try input.write(to: url)
                let file = try SafeTensors.read(url)
                if let model { try ModelWeights.load(file, into: model) }
                _ = try? ModelWeights.config(of: file)
            case "state":
                let state = try CheckpointState.decode(input, path: "input")
                _ = try state.trainingState()
                try state.config.validate()
            case "shard":
                let url = scratch.appendingPathComponent("input.bin")
                try input.write(to: url)
                let shard = try TokenShard(url: url, vocabularySize: 256)
                if shard.tokenCount > 0 { _ = try shard.tokens(start: 0, count: min(shard.tokenCount, 4096)) }
            case "latest":
                let run = scratch.appendingPathComponent("run")
                let store = CheckpointStore(runFolder: run)
                try FileManager.default.createDirectory(at: store.folder, withIntermediateDirectories: true)
                try input.write(to: store.latestURL)
                _ = store.latestName()
                _ = try store.resolve(.auto, log: { _ in })
            default:
                return false
            }
            return true
        } catch {
            return false
        }
    }
}
