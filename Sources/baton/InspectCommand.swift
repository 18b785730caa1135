import Baton
import Foundation

let inspectSpec = CommandSpec(
    name: "inspect", summary: "Print a checkpoint's training state and its tensors' names and shapes.",
    usage:
        "baton inspect PATH   (a checkpoint folder, a run folder (its newest good checkpoint) or a .safetensors file)",
    options: [], takesArguments: true)

func inspectCommand(_ arguments: [String]) throws {
    guard let parsed = try inspectSpec.parse(arguments) else { return }
    let path = try parsed.onlyArgument("PATH")
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
        throw BatonError("\(path): no such file or folder")
    }
    let files: [URL]
    if isFolder.boolValue {
        var checkpoint = URL(fileURLWithPath: path)
        if !FileManager.default.fileExists(atPath: checkpoint.appendingPathComponent(CheckpointStore.stateFile).path) {
            guard let found = try CheckpointStore(runFolder: checkpoint).resolve(.auto, log: { print($0) }) else {
                throw BatonError("\(path): neither a checkpoint folder nor a run folder with a good checkpoint")
            }
            checkpoint = found.url
        }
        let state = try CheckpointStore.verify(checkpoint)
        print("checkpoint: \(checkpoint.path) (verified)")
        print(String(decoding: try state.encoded(), as: UTF8.self))
        files = [
            checkpoint.appendingPathComponent(CheckpointStore.modelFile),
            checkpoint.appendingPathComponent(CheckpointStore.optimizerFile),
        ]
    } else {
        files = [URL(fileURLWithPath: path)]
    }
    for file in files {
        let tensors = try SafeTensors.read(file)
        print("\(file.lastPathComponent): \(tensors.entries.count) tensors")
        for name in tensors.names {
            let entry = tensors.entries[name]!
            print("  \(name)  \(entry.dtype)  \(entry.shape)")
        }
        if !tensors.metadata.isEmpty {
            print(
                "  metadata: "
                    + tensors.metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            )
        }
    }
}
