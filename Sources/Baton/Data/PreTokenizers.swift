import Foundation

/// How text is cut into pieces before BPE: each of the regular expressions Baton reads, written out
/// by hand, scalar by scalar, over valid UTF-8 (Foundation's NSRegularExpression is slow, and its
/// semantics are not Oniguruma's or tiktoken's). A piece never spans two pieces of the pattern.
public enum PreTokenizer: String, Sendable {
    /// GPT-2's pattern (tiktoken's r50k_base; Hugging Face's ByteLevel with use_regex):
    ///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    case gpt2
    /// Every number character a piece of its own, then GPT-2's pattern on the text between them
    /// (Hugging Face's Digits(individual_digits) then ByteLevel: SmolLM, StarCoder).
    case gpt2Digits = "gpt2-digits"
    /// Llama 3's pattern (tiktoken's cl100k_base family):
    ///   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    ///    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    case llama3
    /// Qwen2's: Llama 3's with \p{N} (one number character a piece) for \p{N}{1,3}.
    case qwen2

    /// Calls `body` with each piece of valid UTF-8 `text`, in order.
    func forEachPiece(_ text: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        switch self {
        case .gpt2: PreTokenizer.forEachGPT2Piece(text, body)
        case .gpt2Digits: PreTokenizer.forEachDigitsPiece(text, body)
        case .llama3: PreTokenizer.forEachLlamaPiece(text, digitsAtOnce: 3, body)
        case .qwen2: PreTokenizer.forEachLlamaPiece(text, digitsAtOnce: 1, body)
        }
    }

    /// Whether cutting `bytes` just before `i` leaves the pieces as they are (the threaded encoder
    /// and `prepare`'s block reader cut only there). GPT-2's pattern: `i` is a newline after an
    /// ASCII non-space. Llama 3's: a newline and an ASCII letter or digit meet at `i`, either way
    /// round (its punctuation pieces take the newlines after them, so a newline after punctuation
    /// is no place to cut; and no piece holds a newline followed by a letter or digit).
    func isSafeCut(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> Bool {
        guard i > 0, i < bytes.count, bytes[i - 1] < 0x80, bytes[i] < 0x80 else { return false }
        let before = PreTokenizer.asciiClass[Int(bytes[i - 1])], after = PreTokenizer.asciiClass[Int(bytes[i])]
        switch self {
        case .gpt2, .gpt2Digits: return bytes[i] == 0x0A && before != .space
        case .llama3, .qwen2:
            return bytes[i] == 0x0A && (before == .letter || before == .number)
                || bytes[i - 1] == 0x0A && (after == .letter || after == .number)
        }
    }

    // MARK: character classes

    enum CharacterClass { case letter, number, space, other }

    static let asciiClass: [CharacterClass] = (0..<128).map { classify(UInt32($0)) }

    /// \p{L}, \p{N}, \s (Unicode White_Space), or none of them.
    static func classify(_ value: UInt32) -> CharacterClass {
        guard let scalar = Unicode.Scalar(value) else { return .other }
        let properties = scalar.properties
        if properties.isWhitespace { return .space }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// The scalar at byte offset `i` of valid UTF-8: its class, its UTF-8 length and its value.
    @inline(__always)
    static func scalar(in text: UnsafeBufferPointer<UInt8>, at i: Int) -> (CharacterClass, Int, UInt32) {
        let b0 = text[i]
        if b0 < 0x80 { return (asciiClass[Int(b0)], 1, UInt32(b0)) }
        let length = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2
        var value = UInt32(b0) & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
        for k in 1..<length where i + k < text.count { value = value << 6 | (UInt32(text[i + k]) & 0x3F) }
        return (classify(value), min(length, text.count - i), value)
    }

    /// The end of the run of scalars of class `wanted` that starts at `start`.
    @inline(__always)
    static func run(in text: UnsafeBufferPointer<UInt8>, from start: Int, while wanted: CharacterClass) -> Int {
        var j = start
        while j < text.count {
            let (c, n, _) = scalar(in: text, at: j)
            if c != wanted { break }
            j += n
        }
        return j
    }

    /// Where the last scalar before byte offset `end` starts.
    static func lastScalarStart(in text: UnsafeBufferPointer<UInt8>, before end: Int) -> Int {
        var j = end - 1
        while j > 0 && text[j] & 0xC0 == 0x80 { j -= 1 }
        return j
    }

    // MARK: GPT-2

    static func forEachGPT2Piece(_ text: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        let end = text.count
        func emit(_ from: Int, _ to: Int) { body(UnsafeBufferPointer(rebasing: text[from..<to])) }
        var i = 0
        while i < end {
            let (c, n, value) = scalar(in: text, at: i)
            // 's 't 're 've 'm 'll 'd (lower case only, as the pattern is written)
            if value == 0x27, i + 1 < end {
                let a = text[i + 1], b: UInt8 = i + 2 < end ? text[i + 2] : 0
                var length = 0
                if a == UInt8(ascii: "s") || a == UInt8(ascii: "t") || a == UInt8(ascii: "m") || a == UInt8(ascii: "d")
                {
                    length = 2
                } else if (a == UInt8(ascii: "r") || a == UInt8(ascii: "v")) && b == UInt8(ascii: "e") {
                    length = 3
                } else if a == UInt8(ascii: "l") && b == UInt8(ascii: "l") {
                    length = 3
                }
                if length > 0 { emit(i, i + length); i += length; continue }
            }
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: a space joins the run after it.
            var cls = c, runStart = i
            if value == 0x20, i + 1 < end {
                let next = scalar(in: text, at: i + 1).0
                if next != .space { cls = next; runStart = i + 1 }
            }
            if cls != .space {
                let stop = run(in: text, from: runStart, while: cls)
                emit(i, stop)
                i = stop
                continue
            }
            // `\s+(?!\S)|\s+`: a whitespace run, less its last character when text follows it.
            let stop = run(in: text, from: i + n, while: .space)
            let cut = stop < end && stop - i > n ? lastScalarStart(in: text, before: stop) : stop
            emit(i, cut)
            i = cut
        }
    }

    /// Hugging Face's Digits(individual_digits: true) then GPT-2's pattern on the stretches between.
    static func forEachDigitsPiece(_ text: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        var stretch = 0, i = 0
        while i < text.count {
            let (c, n, _) = scalar(in: text, at: i)
            if c == .number {
                if i > stretch { forEachGPT2Piece(UnsafeBufferPointer(rebasing: text[stretch..<i]), body) }
                body(UnsafeBufferPointer(rebasing: text[i..<(i + n)]))
                stretch = i + n
            }
            i += n
        }
        if text.count > stretch { forEachGPT2Piece(UnsafeBufferPointer(rebasing: text[stretch...]), body) }
    }
}
