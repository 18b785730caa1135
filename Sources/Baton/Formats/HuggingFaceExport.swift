import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `baton export RUN|CHECKPOINT --hf DIR`: a folder that transformers' `AutoModelForCausalLM` and
/// `AutoTokenizer.from_pretrained(DIR)` load as they are: `config.json` for the model's family
/// (GPT2LMHeadModel; LlamaForCausalLM, or Qwen2ForCausalLM where q/k/v have biases: see
/// HuggingFaceExportFiles.swift), the weights (the checkpoint's model.safetensors: transformers'
/// names and layouts, exactly the real vocabulary rows, a tied lm_head left out as in Hugging
/// Face's own files), `generation_config.json`, and for BPE runs the tokenizer files, with Baton's
/// `.baton-export` marker. Where DIR may be and how an earlier export is replaced (whole, never
/// half): see ExportFolder.
public enum HuggingFaceExport {
    public struct Result {
        public let folder: URL
        public let files: [String]
        public let tokenizer: String
        /// The transformers class it loads as (GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM).
        public let modelClass: String
    }

    public static func export(
        path: String, to requested: URL, overwrite: Bool, hooks: ExportFolder.Hooks = ExportFolder.Hooks(),
        log: (String) -> Void = { _ in }
    ) throws -> Result {
        let folder = requested.standardizedFileURL  // "out/." and "out/" name out itself
        let weights = try ModelWeights.resolve(path: path)
        let config = try ModelWeights.config(of: try SafeTensors.read(weights))
        let fileManager = FileManager.default
        let tokenizerFolder: URL? =
            try ModelWeights.tokenizerFolder(ofWeights: weights)
            ?? (config.vocabularySize == 50257 ? try GPT2Tokenizer.bundledFolder() : nil)
        // What the export reads is never written into, replaced or put inside DIR.
        // Outermost first (a message names the largest thing DIR is inside).
        var inputs: [(what: String, url: URL)] = []
        let checkpoint = weights.deletingLastPathComponent()
        if fileManager.fileExists(atPath: checkpoint.appendingPathComponent(CheckpointStore.stateFile).path) {
            if checkpoint.deletingLastPathComponent().lastPathComponent == "checkpoints" {
                inputs.append(("run", checkpoint.deletingLastPathComponent().deletingLastPathComponent()))
            }
            inputs.append(("checkpoint", checkpoint))
        }
        inputs += [("weights file", weights), ("model PATH", URL(fileURLWithPath: path))]
        if let tokenizerFolder { inputs.append(("tokenizer folder", tokenizerFolder)) }
        try ExportFolder.refuseOverlap(folder, inputs: inputs)
        for note in ExportFolder.recoverInterrupted(folder) { log(note) }
        let exists =
            fileManager.fileExists(atPath: folder.path)
            || (try? fileManager.destinationOfSymbolicLink(atPath: folder.path)) != nil
        if exists && !overwrite {
            guard fileManager.fileExists(atPath: folder.appendingPathComponent(ExportFolder.markerName).path) else {
                throw BatonError(
                    "--hf \(folder.path) already exists and is not a Baton export; choose another folder "
                        + "(--overwrite replaces only an earlier export)"
                )
            }
            throw BatonError("--hf \(folder.path) already exists; pass --overwrite to replace it")
        }
        if exists { try ExportFolder.checkReplaceable(folder) }
        let tokenizer =
            try tokenizerFolder.map { try TokenizerFiles(folder: $0, contextLength: config.contextLength) }
            ?? TokenizerFiles()
        let parent = folder.deletingLastPathComponent()
        try ExportFolder.makeFolder(parent, for: folder)
        let temporary = ExportFolder.temporaryName(folder, pid: getpid())
        if let kept = ExportFolder.removeExport(temporary) {
            throw BatonError(
                "--hf \(folder.path): \(temporary.path) holds \(kept), which baton export did not write; move it "
                    + "away and run again"
            )
        }
        guard mkdir(temporary.path, 0o755) == 0 else {
            throw BatonError(
                "--hf \(folder.path): cannot create a folder in \(parent.path) (\(ExportFolder.reason(errno))); "
                    + "choose a --hf folder in a writable place"
            )
        }
        do {
            var files: [String] = []
            func write(_ name: String, _ data: Data) throws {
                try ExportFolder.write(data, named: name, in: temporary, for: folder)
                files.append(name)
            }
            try write("config.json", try json(modelConfig(config, tokens: tokenizer.tokens)))
            try write("generation_config.json", try json(generationConfig(config, tokens: tokenizer.tokens)))
            // The checkpoint's file as it is: transformers' names and layouts, the vocabulary's rows.
            try write("model.safetensors", try Data(contentsOf: weights))
            for (name, data) in tokenizer.files { try write(name, data) }
            // The marker last: it lists every file, and says the folder is an export.
            let marker = ExportFolder.Marker(
                batonVersion: batonVersion, source: FilePaths.canonical(weights), files: files.sorted())
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try ExportFolder.write(
                try encoder.encode(marker), named: ExportFolder.markerName, in: temporary, for: folder)
            AtomicFile.syncFolder(temporary)
            hooks.pause("written")
            // Checked again right before the swap: something may have been put into DIR (or DIR
            // created or removed) while the export was written.
            let existsNow =
                fileManager.fileExists(atPath: folder.path)
                || (try? fileManager.destinationOfSymbolicLink(atPath: folder.path)) != nil
            if existsNow != exists {
                throw BatonError(
                    "--hf \(folder.path) was \(exists ? "removed" : "created") while the export was written; "
                        + "nothing was replaced: run again"
                )
            }
            if exists { try ExportFolder.checkReplaceable(folder) }
            for note in try ExportFolder.moveIntoPlace(temporary, folder, replacing: exists, hooks: hooks) { log(note) }
            return Result(
                folder: folder, files: files.sorted(), tokenizer: tokenizer.description,
                modelClass: modelClass(config).name)
        } catch {
            ExportFolder.removeExport(temporary)  // only what this export wrote
            throw error
        }
    }
}
