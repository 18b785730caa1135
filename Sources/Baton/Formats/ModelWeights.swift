import Foundation

/// `model.safetensors`: every parameter, fp32, under Hugging Face GPT-2 names and layouts. The
/// model shape travels in `__metadata__`, so the file alone is enough to sample or evaluate.
public enum ModelWeights {
    public static func encode(_ model: GPT) throws -> Data {
        let host = try model.device.download(model.parameters)
        let metadata = [
            "format": "pt",
            "baton.n_ctx": String(model.config.contextLength), "baton.vocab_size": String(model.config.vocabularySize),
            "baton.n_layer": String(model.config.layers), "baton.n_head": String(model.config.heads),
            "baton.n_embd": String(model.config.channels),
        ]
        return try host.withUnsafeBufferPointer { all in
            let tensors = model.layout.specs.map { spec in
                SafeTensors.Tensor32(name: spec.name, shape: spec.shape,
                                     values: UnsafeBufferPointer(rebasing: all[spec.offset..<(spec.offset + spec.count)]))
            }
            return try SafeTensors.encode(tensors, metadata: metadata)
        }
    }

    /// Writes the file atomically: a temporary sibling, fsync, rename.
    public static func save(_ model: GPT, to url: URL) throws {
        try AtomicFile.write(try encode(model), to: url)
    }

    /// The model shape recorded in a weights file.
    public static func config(of file: SafeTensors.File) throws -> GPTConfig {
        func value(_ key: String) throws -> Int {
            guard let text = file.metadata["baton.\(key)"], let number = Int(text) else {
                throw BatonError("\(file.url.path): no baton.\(key) in the safetensors metadata; not a Baton weights file")
            }
            return number
        }
        return GPTConfig(contextLength: try value("n_ctx"), vocabularySize: try value("vocab_size"), layers: try value("n_layer"),
                         heads: try value("n_head"), channels: try value("n_embd"))
    }

    /// Loads every parameter of `model` from `file`, checking names and shapes.
    public static func load(_ file: SafeTensors.File, into model: GPT) throws {
        var host = [Float](repeating: 0, count: model.parameterCount)
        for spec in model.layout.specs {
            guard let entry = file.entries[spec.name] else { throw BatonError("\(file.url.path): missing tensor \(spec.name)") }
            guard entry.shape == spec.shape else {
                throw BatonError("\(file.url.path): tensor \(spec.name) has shape \(entry.shape), the model needs \(spec.shape)")
            }
            let values = try file.floats(spec.name)
            host.replaceSubrange(spec.offset..<(spec.offset + spec.count), with: values)
        }
        try model.device.upload(host, to: model.parameters)
    }

    /// Opens a model from a run folder (its model.safetensors) or a weights file.
    public static func openModel(path: String, device: any Device) throws -> GPT {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw BatonError("\(path): no such run folder or weights file")
        }
        let url = isFolder.boolValue ? URL(fileURLWithPath: path).appendingPathComponent("model.safetensors") : URL(fileURLWithPath: path)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw BatonError("\(path): run folder has no model.safetensors yet (the run has not finished)")
        }
        let file = try SafeTensors.read(url)
        let model = try GPT(config: try config(of: file), device: device)
        try load(file, into: model)
        return model
    }
}
