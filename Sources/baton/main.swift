import Baton
import Foundation

let commands: [(name: String, summary: String, run: ([String]) throws -> Void)] = [
    ("train", "train a GPT-2 model (no flags: the default model on the bundled corpus)", trainCommand),
    ("sample", "generate text from a run folder or weights file", sampleCommand),
    ("eval", "mean next-token loss of weights on a token shard, or HellaSwag accuracy", evalCommand),
    ("prepare", "tokenize text files into llm.c token shards", prepareCommand),
    ("bench", "measure training tokens/s", benchCommand),
    ("plot", "draw runs' loss curves as an SVG", plotCommand),
    ("export", "write a Hugging Face folder from a run or checkpoint", exportCommand),
    ("checkpoints", "list a run's checkpoints and verify them", checkpointsCommand),
    ("inspect", "print a checkpoint's state and tensors", inspectCommand),
    ("selftest", "check a backend (the GPU) against the CPU reference, op by op and in training", selftestCommand),
    ("torture", "kill a training run at random instants and check it resumes exactly", tortureCommand),
]

@MainActor func mainHelp() -> String {
    var lines = [
        "baton \(batonVersion): a GPT trainer that can be stopped at any instant and resumed", "",
        "usage: baton COMMAND [options]   (baton COMMAND --help lists a command's flags)", "", "commands:",
    ]
    for command in commands {
        lines.append("  " + command.name.padding(toLength: 12, withPad: " ", startingAt: 0) + command.summary)
    }
    return lines.joined(separator: "\n")
}

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    guard let first = arguments.first, first != "--help", first != "-h", first != "help" else {
        print(mainHelp())
        exit(0)
    }
    if first == "--version" { print("baton \(batonVersion)"); exit(0) }
    guard let command = commands.first(where: { $0.name == first }) else {
        throw UsageError("unknown command '\(first)' (see baton --help)")
    }
    try command.run(Array(arguments.dropFirst()))
    exit(0)
} catch let error as UsageError {
    FileHandle.standardError.write(Data("baton: error: \(error.description)\n".utf8))
    exit(2)
} catch let error as BatonError {
    FileHandle.standardError.write(Data("baton: error: \(error.message)\n".utf8))
    // A flag's value out of range is a usage error, as a malformed one is.
    if case .invalidFlag = error { exit(2) }
    exit(1)
} catch {
    FileHandle.standardError.write(Data("baton: error: \(error)\n".utf8))
    exit(1)
}
