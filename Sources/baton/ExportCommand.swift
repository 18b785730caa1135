import Baton
import Foundation

let exportSpec = CommandSpec(
    name: "export", summary: "Write a Hugging Face folder (GPT2LMHeadModel + tokenizer) from a run or checkpoint.",
    usage: "baton export PATH --hf DIR [--overwrite]   (\(modelPathHelp))",
    options: options("""
        --hf DIR: the folder to write (required)
        --overwrite: replace DIR if it is an earlier export (swapped in whole, once the new one is complete)
        """) + debugExportOptions, takesArguments: true)

func exportCommand(_ arguments: [String]) throws {
    guard let parsed = try exportSpec.parse(arguments) else { return }
    let path = try modelPath(parsed)
    guard let out = parsed.string("--hf") else { throw UsageError("baton export: --hf DIR is required") }
    var hooks = ExportFolder.Hooks()
    #if DEBUG
    if let fault = parsed.string("--inject-fault") { hooks = try exportFaultHooks(fault) }
    #endif
    let result = try HuggingFaceExport.export(path: path, to: URL(fileURLWithPath: out), overwrite: parsed.flag("--overwrite"), hooks: hooks,
                                              log: { say($0) })
    print("wrote \(result.folder.path): \(result.files.joined(separator: ", ")); tokenizer: \(result.tokenizer)")
    print("load it with: GPT2LMHeadModel.from_pretrained(\"\(result.folder.path)\")")
}
