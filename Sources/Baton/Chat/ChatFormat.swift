/// How a conversation becomes tokens, for `baton prepare --sft` and `baton sample --chat`, and
/// which of them are trained on. Two formats, chosen by the tokenizer (no Jinja templates):
///
/// - `chatML`, where the tokenizer declares `<|im_start|>` and `<|im_end|>` as added tokens
///   (Qwen2, SmolLM2, minimind): each message is `<|im_start|>ROLE\n CONTENT <|im_end|>\n`, the
///   markers as their own tokens (as transformers' ChatML templates write them).
/// - `plain`, for any other tokenizer (GPT-2's): each message is the text `<|ROLE|>\n` then the
///   content, then the tokenizer's end-of-text token for the assistant, or `\n` for others.
///   `<|user|>` and the like are ordinary text here (GPT-2 has no such tokens).
///
/// A conversation starts with the token prepare puts before every document (the tokenizer's
/// document separator). Trained on: each assistant message's content and its end marker
/// (`<|im_end|>`, or end of text), nothing else. Each piece (a header, a content, a newline) is
/// tokenized on its own, so the boundaries between trained and untrained tokens are token
/// boundaries, the same at prepare and at chat.
public struct ChatFormat: Sendable, Equatable {
    public enum Kind: String, Sendable { case plain, chatML = "chatml" }
    public let kind: Kind
    /// The first token of every conversation.
    public let start: Int32
    /// The token that ends an assistant's message (`<|im_end|>`, or end of text).
    public let endOfReply: Int32
    /// ChatML's `<|im_start|>`.
    let messageStart: Int32?

    public static let roles = ["system", "user", "assistant"]

    /// The format for a tokenizer: ChatML when it declares both markers as added tokens.
    public init(tokenizer: BPETokenizer, describing folder: String) throws {
        guard let separator = tokenizer.documentSeparator,
            let endOfText = tokenizer.endOfText ?? tokenizer.documentSeparator
        else {
            throw BatonError("\(folder): the tokenizer declares no end-of-text token; a chat needs one to end a reply")
        }
        start = separator
        if let open = ChatFormat.addedToken("<|im_start|>", in: tokenizer),
            let close = ChatFormat.addedToken("<|im_end|>", in: tokenizer)
        {
            kind = .chatML
            messageStart = open
            endOfReply = close
        } else {
            kind = .plain
            messageStart = nil
            endOfReply = endOfText
        }
    }

    /// The id of `text` when the tokenizer holds it as one added token (it encodes to one token
    /// only when matched as such).
    static func addedToken(_ text: String, in tokenizer: BPETokenizer) -> Int32? {
        let matched = tokenizer.encode(text, specialTokens: .matched)
        guard matched.count == 1, tokenizer.encode(text, specialTokens: .asText) != matched else { return nil }
        return matched[0]
    }

    /// One message's tokens, each with whether it is trained on.
    public func message(role: String, content: String, tokenizer: BPETokenizer) -> [(token: Int32, trained: Bool)] {
        let assistant = role == "assistant"
        var out: [(Int32, Bool)] = []
        func add(_ tokens: [Int32], trained: Bool) { out += tokens.map { ($0, trained) } }
        add(header(role: role, tokenizer: tokenizer), trained: false)
        add(tokenizer.encode(content), trained: assistant)
        switch kind {
        case .chatML:
            add([endOfReply], trained: assistant)
            add(tokenizer.encode("\n"), trained: false)
        case .plain:
            if assistant { add([endOfReply], trained: true) } else { add(tokenizer.encode("\n"), trained: false) }
        }
        return out
    }

    /// What comes before a message's content: `<|im_start|>ROLE\n`, or `<|ROLE|>\n` as text.
    public func header(role: String, tokenizer: BPETokenizer) -> [Int32] {
        switch kind {
        case .chatML: return [messageStart!] + tokenizer.encode("\(role)\n")
        case .plain: return tokenizer.encode("<|\(role)|>\n")
        }
    }
}
