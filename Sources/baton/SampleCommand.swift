import Baton
import Foundation

let sampleSpec = CommandSpec(
    name: "sample", summary: "Generate text from trained weights.",
    usage: "baton sample PATH [options]   (\(modelPathHelp))",
    options: [
        Option(name: "--prompt", placeholder: "TEXT", help: "text to continue (default: a newline)"),
        Option(name: "--length", placeholder: "N", help: "tokens to generate (default 300)"),
        Option(name: "--temperature", placeholder: "X", help: "softmax temperature; 0 is greedy (default 0.8)"),
        Option(name: "--top-k", placeholder: "K", help: "sample among the K likeliest tokens; 0: all (default 40)"),
        Option(name: "--seed", placeholder: "N", help: "sampling seed (default 42)"),
    ] + deviceOptions)

func sampleCommand(_ arguments: [String]) throws {
    guard let parsed = try sampleSpec.parse(arguments) else { return }
    let path = try modelPath(parsed)
    let length = try parsed.int("--length") ?? 300
    let temperature = try parsed.float("--temperature") ?? 0.8
    let topK = try parsed.int("--top-k") ?? 40
    guard length >= 0 else { throw UsageError("baton sample: --length must not be negative") }
    guard temperature >= 0 else { throw UsageError("baton sample: --temperature must not be negative") }
    guard topK >= 0 else { throw UsageError("baton sample: --top-k must not be negative") }
    let device = try openDevice(parsed, announce: false)
    let model = try ModelWeights.openModel(path: path, device: device)
    guard model.config.vocabularySize == ByteTokenizer.vocabularySize else {
        throw BatonError("\(path): vocabulary \(model.config.vocabularySize) is not the byte tokenizer's 256; baton sample only decodes byte-level models")
    }
    let prompt = parsed.string("--prompt") ?? ""
    FileHandle.standardOutput.write(Data(prompt.utf8))
    var pending: [UInt8] = []
    _ = try Sampler.generate(model: model, prompt: ByteTokenizer.encode(prompt), length: length, temperature: temperature,
                             topK: topK, seed: try parsed.seed("--seed") ?? 42) { token in
        // Print whole UTF-8 characters as they complete.
        pending.append(UInt8(clamping: token))
        if String(validating: pending, as: UTF8.self) != nil || pending.count >= 4 {
            FileHandle.standardOutput.write(Data(pending))
            pending.removeAll()
        }
    }
    FileHandle.standardOutput.write(Data(pending + [0x0A]))
}

