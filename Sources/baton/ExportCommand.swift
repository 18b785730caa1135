import Baton
import Foundation

let exportSpec = CommandSpec(
    name: "export",
    summary:
        "Write a Hugging Face folder (GPT2LMHeadModel, LlamaForCausalLM or Qwen2ForCausalLM, with the tokenizer) "
        + "from a run or checkpoint.",
    usage: "baton export PATH --hf DIR [--overwrite]   (\(modelPathHelp))",
    options: options(
        """
        --hf DIR: the folder to write (required)
        --overwrite: replace DIR if it is an earlier export (swapped in whole, once the new one is complete)
        """) + debugExportOptions, takesArguments: true)

func exportCommand(_ arguments: [String]) throws {
    guard let parsed = try exportSpec.parse(arguments) else { return }
    let path = try modelPath(parsed)
    guard let out = parsed.string("--hf") else { throw UsageError("baton export: --hf DIR is required") }
    var hooks = ExportFolder.Hooks()
    #if DEBUG
    if let fault = parsed.string("--inject-fault") { hooks = try exportHooks(fault) }
    #endif
    let result = try HuggingFaceExport.export(
        path: path, to: URL(fileURLWithPath: out), overwrite: parsed.flag("--overwrite"), hooks: hooks,
        log: { say($0) })
    print("wrote \(result.folder.path): \(result.files.joined(separator: ", ")); tokenizer: \(result.tokenizer)")
    print("load it with: \(result.modelClass).from_pretrained(\"\(result.folder.path)\")")
}

#if DEBUG
/// The debug hooks of --inject-fault: pause-at:POINT:FILE (see exportFaultHooks: wait to be
/// killed), or wait-at:POINT:FILE: at POINT create FILE, wait until it is deleted, then go on, so a
/// test can change DIR at that instant (the re-check before the swap).
func exportHooks(_ text: String) throws -> ExportFolder.Hooks {
    let parts = text.split(separator: ":", maxSplits: 2).map(String.init)
    guard parts.count == 3, parts[0] == "wait-at" else { return try exportFaultHooks(text) }
    var hooks = try exportFaultHooks("pause-at:\(parts[1]):\(parts[2])")  // checks POINT
    let (point, marker) = (parts[1], parts[2])
    hooks.pause = { reached in
        guard reached == point else { return }
        _ = FileManager.default.createFile(atPath: marker, contents: Data("\(getpid())\n".utf8))
        while FileManager.default.fileExists(atPath: marker) { usleep(10_000) }
    }
    return hooks
}
#endif
