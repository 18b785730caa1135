import Baton
import Foundation

let prepareSpec = CommandSpec(
    name: "prepare", summary: "Tokenize text files byte by byte into llm.c shards: 90% train, 10% val.",
    usage: "baton prepare TEXT... --out DIR",
    options: [
        Option(name: "--out", placeholder: "DIR", help: "folder for the shards (required)"),
        Option(name: "--name", placeholder: "NAME", help: "shard name prefix (default corpus)"),
    ])

func prepareCommand(_ arguments: [String]) throws {
    guard let parsed = try prepareSpec.parse(arguments) else { return }
    guard !parsed.positionals.isEmpty else { throw UsageError("baton prepare: give at least one text file (see baton prepare --help)") }
    guard let out = parsed.string("--out") else { throw UsageError("baton prepare: --out DIR is required") }
    let result = try DatasetPreparation.prepare(textFiles: parsed.positionals.map { URL(fileURLWithPath: $0) },
                                                outputFolder: URL(fileURLWithPath: out), name: parsed.string("--name") ?? "corpus")
    print("wrote \(result.files.map(\.path).joined(separator: ", ")): \(result.trainTokens) train and \(result.valTokens) val tokens")
}

