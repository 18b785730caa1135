import Baton
import Foundation

let prepareSpec = CommandSpec(
    name: "prepare",
    summary: "Tokenize text into llm.c token shards: bytes (90% train, 10% val), or BPE, streamed.",
    usage:
        "baton prepare FILE... --out DIR [--tokenizer bytes|gpt2|DIR]   (.txt: one document; .jsonl: one a line)\n"
        + "       baton prepare --sft FILE.jsonl --tokenizer gpt2|DIR --out DIR   (one conversation a line)",
    options: options(
        """
        --out DIR: folder for the shards (required); written whole beside it, then swapped in
        --overwrite: replace DIR when it already holds a dataset (a folder holding other files is never replaced)
        --name NAME: shard name prefix (default corpus)
        --tokenizer bytes|gpt2|DIR: bytes (default), the bundled GPT-2 BPE, or a Hugging Face tokenizer folder
            (tokenizer.json of Llama 3, Qwen2, SmolLM or GPT-2's kind, else vocab.json + merges.txt)
        --field NAME: BPE: the JSONL field holding the text (default text)
        --shard-tokens N: BPE: tokens per shard (default 100000000, as llm.c)
        --val-tokens N: BPE: tokens for validation, taken first (default: 10% of the tokens, at most one shard)
        --threads N: BPE: tokenizer threads (default: one per core)
        --sft: the file holds conversations ({"messages": [{"role", "content"}, ...]} a line) for supervised
            fine-tuning: masked shards, trained on the assistant's replies only (ChatML where the tokenizer has
            <|im_start|> and <|im_end|>, else <|user|>/<|assistant|> text; README: Supervised fine-tuning)
        --pad-to N: --sft: pad each conversation (with untrained separators) to a multiple of N tokens, so each
            starts a window of the run's --seq-len N (default: packed one after another)
        """) + debugPrepareOptions, takesArguments: true)

func prepareCommand(_ arguments: [String]) throws {
    guard let parsed = try prepareSpec.parse(arguments) else { return }
    guard !parsed.positionals.isEmpty else {
        throw UsageError("baton prepare: give at least one text file (see baton prepare --help)")
    }
    guard let out = parsed.string("--out") else { throw UsageError("baton prepare: --out DIR is required") }
    #if DEBUG
    if let fault = parsed.string("--inject-fault") { try injectPrepareFault(fault) }
    #endif
    let files = parsed.positionals.map { URL(fileURLWithPath: $0) }
    let tokenizer = parsed.string("--tokenizer") ?? "bytes"
    let overwrite = parsed.flag("--overwrite")
    let name = parsed.string("--name") ?? "corpus"
    // The prefix names files inside --out: a path would write outside the folder that is swapped in.
    guard !name.isEmpty, !name.contains("/"), name != ".", name != "..", !name.hasPrefix("."), name.utf8.count <= 200
    else {
        throw UsageError(
            "baton prepare: --name must be a plain file-name prefix (no '/', not empty, not starting with '.', at "
                + "most 200 bytes), got '\(name.prefix(40))\(name.count > 40 ? "..." : "")'"
        )
    }
    if parsed.flag("--sft") { return try prepareConversations(parsed, out: out, tokenizer: tokenizer, name: name) }
    if parsed.string("--pad-to") != nil { throw UsageError("baton prepare: --pad-to is for --sft") }
    if tokenizer == "bytes" {
        for flag in ["--field", "--shard-tokens", "--val-tokens"] where parsed.string(flag) != nil {
            throw UsageError(
                "baton prepare: \(flag) is for --tokenizer gpt2 or DIR; byte-level shards are 90% train, 10% val")
        }
        let result = try DatasetPreparation.prepare(
            textFiles: files, outputFolder: URL(fileURLWithPath: out), name: name,
            overwrite: overwrite)
        print(
            "wrote \(result.files.map(\.path).joined(separator: ", ")): \(result.trainTokens) train and "
                + "\(result.valTokens) val tokens"
        )
        return
    }
    var options = CorpusPreparation.Options()
    options.name = name
    options.field = parsed.string("--field") ?? "text"
    options.shardTokens = try parsed.int("--shard-tokens") ?? options.shardTokens
    options.valTokens = try parsed.int("--val-tokens")
    options.threads = try threadCount(parsed) ?? 0
    options.overwrite = overwrite
    options.progress = { say($0) }
    let folder = tokenizer == "gpt2" ? try GPT2Tokenizer.bundledFolder() : URL(fileURLWithPath: tokenizer)
    let start = monotonicSeconds()
    let result = try CorpusPreparation(tokenizerFolder: folder, options: options).prepare(
        files: files, outputFolder: URL(fileURLWithPath: out))
    say(
        "wrote \(result.files.count) shards to \(out): \(result.documents) documents, \(result.trainTokens) train "
            + "and \(result.valTokens) val tokens in \(formatDuration(monotonicSeconds() - start))"
    )
}

/// `baton prepare --sft FILE.jsonl`: conversations into masked shards.
func prepareConversations(_ parsed: ParsedArguments, out: String, tokenizer: String, name: String) throws {
    guard parsed.positionals.count == 1 else {
        throw UsageError("baton prepare --sft: give one .jsonl file of conversations")
    }
    guard tokenizer != "bytes" else {
        throw UsageError("baton prepare --sft needs --tokenizer gpt2 or DIR (a chat needs an end-of-text token)")
    }
    for flag in ["--field", "--shard-tokens", "--val-tokens"] where parsed.string(flag) != nil {
        throw UsageError(
            "baton prepare: \(flag) is not for --sft (one shard each; the first tenth of the conversations validate)")
    }
    let folder = tokenizer == "gpt2" ? try GPT2Tokenizer.bundledFolder() : URL(fileURLWithPath: tokenizer)
    var preparation = try ConversationPreparation(tokenizerFolder: folder)
    preparation.name = name
    preparation.overwrite = parsed.flag("--overwrite")
    if let padTo = try parsed.int("--pad-to") {
        guard padTo >= 1 else { throw UsageError("baton prepare: --pad-to must be at least 1, got \(padTo)") }
        preparation.padTo = padTo
    }
    let result = try preparation.prepare(
        file: URL(fileURLWithPath: parsed.positionals[0]), outputFolder: URL(fileURLWithPath: out))
    say(
        "wrote \(out): \(result.conversations) conversations (\(result.validationConversations) for validation), "
            + "\(result.trainTokens) train and \(result.valTokens) val tokens, \(result.trainedTokens) of them "
            + "trained on; chat format \(result.format.rawValue)"
    )
}

// Debug builds only: `baton prepare --inject-fault KIND:FILE` pauses at an instant of the write
// (creating FILE, then waiting to be killed), so the tests can kill a `baton prepare` there.
#if DEBUG
let debugPrepareOptions = [
    Option(
        name: "--inject-fault", placeholder: "KIND:FILE",
        help:
            "debug builds, for tests: pause-after-shard, pause-before-swap, pause-after-swap, pause-aside (the "
            + "rename-aside swap) or no-exchange:FILE (that swap, no pause)"
    )
]

func injectPrepareFault(_ text: String) throws {
    let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
    let instants = [
        "pause-after-shard": "after-shard", "pause-before-swap": "before-swap", "pause-after-swap": "after-swap",
        "pause-aside": "aside",
    ]
    guard parts.count == 2, parts[0] == "no-exchange" || instants[parts[0]] != nil else {
        throw UsageError(
            "baton prepare: --inject-fault expects KIND:FILE (\(instants.keys.sorted().joined(separator: ", ")), "
                + "no-exchange), got '\(text)'"
        )
    }
    if parts[0] == "no-exchange" || parts[0] == "pause-aside" { DatasetFolder.forceNoExchange = true }
    guard let instant = instants[parts[0]] else { return }
    let marker = parts[1]
    DatasetFolder.faultHook = { reached in
        guard reached == instant else { return }
        _ = FileManager.default.createFile(atPath: marker, contents: Data("\(getpid())\n".utf8))
        while true { sleep(60) }
    }
}
#else
let debugPrepareOptions: [Option] = []
#endif
