import Baton
import Foundation

let sampleSpec = CommandSpec(
    name: "sample", summary: "Generate text from trained weights.",
    usage: "baton sample PATH [options]   (\(modelPathHelp))",
    options: options(
        """
        --prompt TEXT: text to continue (default: a newline)
        --length N: tokens to generate, 0 to 1000000 (default 300)
        --temperature X: softmax temperature; 0 is greedy (default 0.8)
        --top-k K: sample among the K likeliest tokens; 0: all (default 40)
        --seed N: sampling seed (default 42)
        --tokenizer bytes|gpt2|DIR: default: the one the data was prepared with, else the vocabulary's (256: bytes,
            50257: GPT-2)
        --stop-at-eot: stop after the end of a document (<|endoftext|>, or the token the tokenizer puts between
            documents)
        --chat: talk: each line read from stdin is a user message; the model's reply (up to --length tokens, or
            its end marker) is printed on one line; the conversation is kept, in the chat format that baton
            prepare --sft writes (README: Supervised fine-tuning)
        """) + deviceOptions, takesArguments: true)

func sampleCommand(_ arguments: [String]) throws {
    guard let parsed = try sampleSpec.parse(arguments) else { return }
    let path = try modelPath(parsed)
    let length = try parsed.int("--length") ?? 300
    let temperature = try parsed.float("--temperature") ?? 0.8
    let topK = try parsed.int("--top-k") ?? 40
    guard length >= 0 else { throw UsageError("baton sample: --length must not be negative") }
    guard length <= Sampler.maximumLength else {
        throw UsageError(
            "baton sample: --length must be at most \(Sampler.maximumLength) tokens, got \(length); sample in "
                + "several runs for more"
        )
    }
    guard temperature >= 0 else { throw UsageError("baton sample: --temperature must not be negative") }
    guard topK >= 0 else { throw UsageError("baton sample: --top-k must not be negative") }
    let device = try openDevice(parsed, announce: false)
    let weights = try ModelWeights.resolve(path: path)
    let model = try ModelWeights.openModel(path: weights.path, device: device)
    let tokenizer =
        try parsed.string("--tokenizer").map(TextTokenizer.named)
        ?? TextTokenizer.forModel(
            vocabularySize: model.config.vocabularySize,
            tokenizerFolder: try ModelWeights.tokenizerFolder(ofWeights: weights))
    if parsed.flag("--chat") {
        guard case .bpe(let chatTokenizer) = tokenizer else {
            throw UsageError("baton sample --chat: the model's tokenizer is bytes; chat needs a BPE tokenizer")
        }
        for flag in ["--prompt", "--stop-at-eot"] where parsed.string(flag) != nil {
            throw UsageError("baton sample: \(flag) is not for --chat (the prompt is each line of stdin)")
        }
        return try chat(
            model: model, tokenizer: chatTokenizer, length: length, temperature: temperature, topK: topK,
            seed: try parsed.seed("--seed") ?? 42)
    }
    let prompt = parsed.string("--prompt") ?? ""
    let promptTokens = tokenizer.encode(prompt)
    if let bad = promptTokens.first(where: { Int($0) >= model.config.vocabularySize }) {
        throw BatonError(
            "--prompt: token \(bad) is not below the model's vocabulary \(model.config.vocabularySize); pass the "
                + "--tokenizer it was trained with"
        )
    }
    FileHandle.standardOutput.write(Data(prompt.utf8))
    var pending: [UInt8] = []
    let stop = parsed.flag("--stop-at-eot") ? tokenizer.endsOfDocument : []
    _ = try Sampler.generate(
        model: model, prompt: promptTokens, length: length, temperature: temperature, topK: topK,
        seed: try parsed.seed("--seed") ?? 42, start: tokenizer.start, stopAt: stop
    ) { token in
        // Print whole UTF-8 characters as they complete.
        pending += tokenizer.bytes(of: token)
        var valid = pending.count
        while valid > 0 && String(validating: pending[..<valid], as: UTF8.self) == nil && pending.count - valid < 4 {
            valid -= 1
        }
        if valid > 0 {
            FileHandle.standardOutput.write(Data(pending[..<valid]))
            pending.removeFirst(valid)
        }
    }
    FileHandle.standardOutput.write(Data(pending + [0x0A]))
}
