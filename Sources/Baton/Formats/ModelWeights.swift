import Foundation

/// `model.safetensors`: every parameter, fp32, under Hugging Face GPT-2 names and layouts. The
/// model shape travels in `__metadata__`, so the file alone is enough to sample or evaluate.
public enum ModelWeights {
    /// GPT-2's five numbers under their own keys (all a GPT-2 file holds, byte for byte as before
    /// the Llama family), and for the Llama family the whole shape as config.json's "model"
    /// object under baton.config.
    public static func metadata(for config: GPTConfig) -> [String: String] {
        var metadata = [
            "format": "pt",
            "baton.n_ctx": String(config.contextLength), "baton.vocab_size": String(config.vocabularySize),
            "baton.n_layer": String(config.layers), "baton.n_head": String(config.heads),
            "baton.n_embd": String(config.channels),
        ]
        if config.architecture != .gpt2 {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            metadata["baton.config"] = String(decoding: try! encoder.encode(config), as: UTF8.self)
        }
        return metadata
    }

    /// The model shape recorded in a weights file.
    public static func config(of file: SafeTensors.File) throws -> GPTConfig {
        if let text = file.metadata["baton.config"] {
            let config: GPTConfig
            do { config = try JSONDecoder().decode(GPTConfig.self, from: Data(text.utf8)) } catch {
                throw BatonError("\(file.url.path): baton.config in the safetensors metadata is not a model shape")
            }
            try config.validate(file: file.url.path, key: { "baton.config \($0.rawValue)" })
            // A tied head has no tensor of its own: one in the file means the shape and the weights disagree.
            if config.tiedEmbeddings && file.entries["lm_head.weight"] != nil {
                throw BatonError(
                    "\(file.url.path): baton.config ties the LM head to the embedding, but the file holds its own "
                        + "lm_head.weight; the metadata does not describe these weights")
            }
            return config
        }
        func value(_ key: String) throws -> Int {
            guard let text = file.metadata["baton.\(key)"], let number = Int(text) else {
                throw BatonError(
                    "\(file.url.path): no baton.\(key) in the safetensors metadata; not a Baton weights file")
            }
            return number
        }
        let config = GPTConfig(
            contextLength: try value("n_ctx"), vocabularySize: try value("vocab_size"), layers: try value("n_layer"),
            heads: try value("n_head"), channels: try value("n_embd"))
        try config.validate(
            file: file.url.path, key: { $0 == .contextLength ? "baton.n_ctx" : "baton.\($0.huggingFaceKey)" })
        return config
    }

    /// Loads every parameter of `model` from `file`, checking names and shapes.
    public static func load(_ file: SafeTensors.File, into model: GPT) throws {
        try file.upload(layout: model.layout, suffix: "", to: model.parameters, device: model.device)
    }

    /// The weights file a PATH means: a weights file as is, a checkpoint folder's
    /// model.safetensors, or a run folder's newest good checkpoint.
    public static func resolve(path: String) throws -> URL {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw BatonError("\(path): no such run folder, checkpoint or weights file")
        }
        let url = URL(fileURLWithPath: path)
        guard isFolder.boolValue else { return url }
        let direct = url.appendingPathComponent(CheckpointStore.modelFile)
        if FileManager.default.fileExists(atPath: url.appendingPathComponent(CheckpointStore.stateFile).path) {
            _ = try CheckpointStore.verify(url)
            return direct
        }
        let store = CheckpointStore(runFolder: url)
        guard let found = try store.resolve(.auto, log: { FileHandle.standardError.write(Data(($0 + "\n").utf8)) })
        else {
            throw BatonError("\(path): no checkpoint yet (looked in \(store.folder.path))")
        }
        return found.url.appendingPathComponent(CheckpointStore.modelFile)
    }

    /// The config a weights file's checkpoint was trained with (from its state.json), if it sits
    /// in a checkpoint.
    public static func trainingConfig(ofWeights url: URL) -> TrainingConfig? {
        let state = url.deletingLastPathComponent().appendingPathComponent(CheckpointStore.stateFile)
        guard let data = FileManager.default.contents(atPath: state.path) else { return nil }
        return (try? CheckpointState.decode(data, path: state.path))?.config
    }

    /// Where the tokenizer files of the text a checkpoint learned are: the data folder's (from its
    /// dataset.json), else the Hugging Face folder the run started from, when it has them
    /// (merges.txt beside vocab.json, or tokenizer.json).
    public static func tokenizerFolder(ofWeights url: URL) throws -> URL? {
        guard let config = trainingConfig(ofWeights: url) else { return nil }
        return try tokenizerFolder(of: config)
    }

    /// The same for a run's config: its data folder's tokenizer, else its Hugging Face source's.
    public static func tokenizerFolder(of config: TrainingConfig) throws -> URL? {
        if let record = try DatasetRecord.read(dataFolder: URL(fileURLWithPath: config.dataFolder)) {
            return record.tokenizerFolder
        }
        if let source = config.initFrom.map({ URL(fileURLWithPath: $0.folder) }),
            ["merges.txt", "tokenizer.json"].contains(where: {
                FileManager.default.fileExists(atPath: source.appendingPathComponent($0).path)
            })
        {
            return source
        }
        return nil
    }

    /// Opens a model from a run folder, a checkpoint folder or a weights file.
    public static func openModel(path: String, device: Device) throws -> GPT {
        let file = try SafeTensors.read(try resolve(path: path))
        let model = try GPT(config: try config(of: file), device: device)
        try load(file, into: model)
        return model
    }
}
