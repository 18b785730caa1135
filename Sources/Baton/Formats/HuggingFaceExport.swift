import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `baton export RUN|CHECKPOINT --hf DIR`: a folder that transformers' `GPT2LMHeadModel` and
/// `AutoTokenizer.from_pretrained(DIR)` load as they are: GPT-2's `config.json`, the weights
/// (the checkpoint's model.safetensors: Hugging Face names, exactly the real vocabulary rows, the
/// tied lm_head left out as in Hugging Face's own files), `generation_config.json`, and for BPE
/// runs the tokenizer files. Written into a temporary sibling and renamed into place; an
/// existing DIR is refused unless `overwrite`.
public enum HuggingFaceExport {
    public struct Result { public let folder: URL; public let files: [String]; public let tokenizer: String }

    public static func export(path: String, to folder: URL, overwrite: Bool) throws -> Result {
        let weights = try ModelWeights.resolve(path: path)
        let config = try ModelWeights.config(of: try SafeTensors.read(weights))
        let fileManager = FileManager.default
        if fileManager.fileExists(atPath: folder.path) && !overwrite {
            throw BatonError("--hf \(folder.path) already exists; pass --overwrite to replace it")
        }
        let tokenizerFolder: URL? = try ModelWeights.tokenizerFolder(ofWeights: weights)
            ?? (config.vocabularySize == 50257 ? try GPT2Tokenizer.bundledFolder() : nil)
        let parent = folder.deletingLastPathComponent()
        let temporary = parent.appendingPathComponent(".\(folder.lastPathComponent).tmp-\(getpid())")
        try? fileManager.removeItem(at: temporary)
        do {
            try fileManager.createDirectory(at: temporary, withIntermediateDirectories: true)
            var files: [String] = []
            func write(_ name: String, _ data: Data) throws {
                try AtomicFile.write(data, to: temporary.appendingPathComponent(name))
                files.append(name)
            }
            func json(_ object: [String: Any]) throws -> Data {
                try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            }
            let bpe = tokenizerFolder != nil
            var modelConfig: [String: Any] = [
                "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": config.layers, "n_head": config.heads,
                "n_embd": config.channels, "n_positions": config.contextLength, "n_ctx": config.contextLength,
                "vocab_size": config.vocabularySize, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
                "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "initializer_range": 0.02, "tie_word_embeddings": true,
                "torch_dtype": "float32", "baton_version": batonVersion,
            ]
            var generation: [String: Any] = ["do_sample": true, "max_length": config.contextLength]
            if bpe {
                for key in ["bos_token_id", "eos_token_id"] { modelConfig[key] = Int(GPT2Tokenizer.endOfText); generation[key] = Int(GPT2Tokenizer.endOfText) }
            }
            try write("config.json", try json(modelConfig))
            try write("generation_config.json", try json(generation))
            try write("model.safetensors", try Data(contentsOf: weights))
            if let tokenizerFolder {
                for name in ["vocab.json", "merges.txt"] { try write(name, try Data(contentsOf: tokenizerFolder.appendingPathComponent(name))) }
                let eot = GPT2Tokenizer.endOfTextText
                try write("tokenizer_config.json", try json([
                    "tokenizer_class": "GPT2Tokenizer", "model_max_length": config.contextLength, "add_prefix_space": false,
                    "bos_token": eot, "eos_token": eot, "unk_token": eot, "errors": "replace",
                ]))
                try write("special_tokens_map.json", try json(["bos_token": eot, "eos_token": eot, "unk_token": eot]))
            }
            AtomicFile.syncFolder(temporary)
            if fileManager.fileExists(atPath: folder.path) {
                // --overwrite: the old folder goes only once the new one is complete.
                let aside = parent.appendingPathComponent(".\(folder.lastPathComponent).old-\(getpid())")
                guard rename(folder.path, aside.path) == 0 else { throw BatonError("\(folder.path): cannot replace (\(String(cString: strerror(errno))))") }
                guard rename(temporary.path, folder.path) == 0 else {
                    _ = rename(aside.path, folder.path)
                    throw BatonError("\(folder.path): cannot move the export into place (\(String(cString: strerror(errno))))")
                }
                try? fileManager.removeItem(at: aside)
            } else {
                guard rename(temporary.path, folder.path) == 0 else {
                    throw BatonError("\(folder.path): cannot move the export into place (\(String(cString: strerror(errno))))")
                }
            }
            AtomicFile.syncFolder(parent)
            return Result(folder: folder, files: files.sorted(), tokenizer: bpe ? "gpt2" : "bytes (no Hugging Face tokenizer)")
        } catch {
            try? fileManager.removeItem(at: temporary)
            throw error
        }
    }
}
