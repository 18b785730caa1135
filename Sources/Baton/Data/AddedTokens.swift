import Foundation

/// A tokenizer.json's `added_tokens`, found in text before pre-tokenization as Hugging Face finds
/// them: scanning left to right, at the first place where any token starts, the longest one there
/// (leftmost-longest); the scan goes on after it. A special token skipped (`specialTokens:
/// .asText`, as `encode_special_tokens` skips it) still ends the match there, as in `tokenizers`.
struct AddedTokens {
    /// An added token: its text (UTF-8), id, whether it is special, and whether it is matched in
    /// normalized text (else in the raw text).
    struct Token {
        let content: [UInt8], id: Int32, special: Bool, normalized: Bool
        var text: String { String(decoding: content, as: UTF8.self) }
    }

    /// A byte trie of the tokens: node 0 is the root; `children[node][byte]` the next node.
    private var children: [[UInt8: Int32]] = [[:]]
    private var terminal: [Int32] = [-1]
    private var tokens: [Token] = []
    /// Bytes some token starts with: a place whose byte is not one cannot start a match.
    private var firstBytes = [Bool](repeating: false, count: 256)

    var isEmpty: Bool { tokens.isEmpty }
    /// Whether some token holds a newline: then no cut before a newline is safe (a match may span it).
    private(set) var holdsNewline = false

    init(_ list: [Token] = []) {
        for token in list { insert(token) }
    }

    private mutating func insert(_ token: Token) {
        guard let first = token.content.first else { return }
        firstBytes[Int(first)] = true
        holdsNewline = holdsNewline || token.content.contains(0x0A)
        var node = 0
        for byte in token.content {
            if let child = children[node][byte] {
                node = Int(child)
            } else {
                children.append([:])
                terminal.append(-1)
                children[node][byte] = Int32(children.count - 1)
                node = children.count - 1
            }
        }
        terminal[node] = Int32(tokens.count)
        tokens.append(token)
    }

    /// Calls `token` with each match's id and `text` with each non-empty stretch between matches, in order.
    func split(
        _ bytes: UnsafeBufferPointer<UInt8>, specialsAsText: Bool, token: (Int32) -> Void,
        text: (UnsafeBufferPointer<UInt8>) -> Void
    ) {
        guard !tokens.isEmpty else {
            if !bytes.isEmpty { text(bytes) }
            return
        }
        var stretch = 0, i = 0
        while i < bytes.count {
            guard firstBytes[Int(bytes[i])], let (index, end) = longestMatch(bytes, at: i) else {
                i += 1
                continue
            }
            let match = tokens[index]
            if match.special && specialsAsText {
                i = end  // skipped, but the scan goes on after it
                continue
            }
            if i > stretch { text(UnsafeBufferPointer(rebasing: bytes[stretch..<i])) }
            token(match.id)
            i = end
            stretch = end
        }
        if bytes.count > stretch { text(UnsafeBufferPointer(rebasing: bytes[stretch...])) }
    }

    /// The longest token that starts at `start`, and where it ends.
    private func longestMatch(_ bytes: UnsafeBufferPointer<UInt8>, at start: Int) -> (Int, Int)? {
        var node = 0, found: (Int, Int)?
        var i = start
        while i < bytes.count, let child = children[node][bytes[i]] {
            node = Int(child)
            i += 1
            if terminal[node] >= 0 { found = (Int(terminal[node]), i) }
        }
        return found
    }
}
