import Baton
import Foundation

/// `baton sample --chat`: reads user lines from stdin until it ends, and after each prints the
/// model's reply on one line. The conversation so far is the prompt (its last context-length
/// tokens), in ChatFormat's tokens, as `baton prepare --sft` wrote the training data: the start
/// token, each message, then the assistant's header; the reply ends at the format's end marker
/// (or after `length` tokens). Works the same with a terminal or a pipe.
func chat(model: GPT, tokenizer: BPETokenizer, length: Int, temperature: Float, topK: Int, seed: UInt64) throws {
    let format = try ChatFormat(tokenizer: tokenizer, describing: "the model's tokenizer")
    var history: [Int32] = [format.start]
    var turn: UInt64 = 0
    let interactive = isatty(0) != 0
    if interactive { FileHandle.standardError.write(Data("chat (\(format.kind.rawValue)); end with Ctrl-D\n".utf8)) }
    while true {
        if interactive { FileHandle.standardError.write(Data("> ".utf8)) }
        guard let line = readLine() else { break }
        history += format.message(role: "user", content: line, tokenizer: tokenizer).map(\.token)
        history += format.header(role: "assistant", tokenizer: tokenizer)
        if let bad = history.first(where: { Int($0) >= model.config.vocabularySize }) {
            throw BatonError(
                "--chat: token \(bad) is not below the model's vocabulary \(model.config.vocabularySize); pass the "
                    + "--tokenizer it was trained with")
        }
        // Each turn its own seed, so a reply does not depend on how long the earlier ones were.
        let reply = try Sampler.generate(
            model: model, prompt: history, length: length, temperature: temperature, topK: topK,
            seed: RandomGenerator.derive(seed, turn), stopAt: [format.endOfReply])
        turn += 1
        let text = reply.filter { $0 != format.endOfReply && Int($0) < tokenizer.vocabularySize }.flatMap {
            tokenizer.tokenBytes[Int($0)]
        }
        // One line per reply: the reply's own newlines are shown as spaces.
        let shown = String(decoding: text, as: UTF8.self).replacingOccurrences(of: "\n", with: " ")
        FileHandle.standardOutput.write(Data((shown + "\n").utf8))
        history += reply
        if reply.last != format.endOfReply { history.append(format.endOfReply) }  // cut at --length: end it
        if format.kind == .chatML { history += tokenizer.encode("\n") }
    }
}
