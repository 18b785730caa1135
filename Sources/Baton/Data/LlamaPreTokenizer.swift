import Foundation

extension PreTokenizer {
    /// Llama 3's pattern (`digitsAtOnce` 3) or Qwen2's (1), alternative by alternative, the first
    /// that matches at each place winning, as in the regular expression:
    ///   1 (?i:'s|'t|'re|'ve|'m|'ll|'d)    a contraction, any case ('ſ folds to 's, as Oniguruma folds it)
    ///   2 [^\r\n\p{L}\p{N}]?\p{L}+        letters, with one character before them that is none of those
    ///   3 \p{N}{1,3}                      up to three number characters (Qwen2: one)
    ///   4  ?[^\s\p{L}\p{N}]+[\r\n]*       punctuation and symbols, a space before, newlines after
    ///   5 \s*[\r\n]+                      whitespace up to and with its last newline
    ///   6 \s+(?!\S)                       whitespace at the end, or less its last character
    ///   7 \s+                             one whitespace character
    static func forEachLlamaPiece(
        _ text: UnsafeBufferPointer<UInt8>, digitsAtOnce: Int, _ body: (UnsafeBufferPointer<UInt8>) -> Void
    ) {
        let end = text.count
        var i = 0
        func emit(_ to: Int) {
            body(UnsafeBufferPointer(rebasing: text[i..<to]))
            i = to
        }
        while i < end {
            let (c, n, value) = scalar(in: text, at: i)
            // 1
            if value == 0x27, let length = contractionLength(text, after: i + 1) {
                emit(i + 1 + length)
                continue
            }
            // 2
            if c == .letter {
                emit(run(in: text, from: i, while: .letter))
                continue
            }
            if c != .number, value != 0x0A, value != 0x0D, i + n < end, scalar(in: text, at: i + n).0 == .letter {
                emit(run(in: text, from: i + n, while: .letter))
                continue
            }
            // 3
            if c == .number {
                var stop = i, taken = 0
                while stop < end && taken < digitsAtOnce {
                    let (next, length, _) = scalar(in: text, at: stop)
                    guard next == .number else { break }
                    stop += length
                    taken += 1
                }
                emit(stop)
                continue
            }
            // 4
            let symbols = value == 0x20 && i + 1 < end && scalar(in: text, at: i + 1).0 == .other ? i + 1 : i
            if symbols > i || c == .other {
                var stop = run(in: text, from: symbols, while: .other)
                while stop < end && (text[stop] == 0x0A || text[stop] == 0x0D) { stop += 1 }
                emit(stop)
                continue
            }
            // 5: the whitespace run [i, stop) up to its last newline, if it has one
            let stop = run(in: text, from: i, while: .space)
            if let newline = text[i..<stop].lastIndex(where: { $0 == 0x0A || $0 == 0x0D }) {
                emit(newline + 1)
                continue
            }
            // 6, 7
            emit(stop < end && stop - i > n ? lastScalarStart(in: text, before: stop) : stop)
        }
    }

    /// The UTF-8 length of `s t m d re ve ll` (any case; ſ for s) at `start`, or nil.
    private static func contractionLength(_ text: UnsafeBufferPointer<UInt8>, after start: Int) -> Int? {
        guard start < text.count else { return nil }
        func lower(_ at: Int) -> UInt8 { at < text.count ? text[at] | 0x20 : 0 }
        switch lower(start) {
        case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"):
            return text[start] < 0x80 ? 1 : nil
        case UInt8(ascii: "r"), UInt8(ascii: "v"):
            return text[start] < 0x80 && lower(start + 1) == UInt8(ascii: "e") && text[start + 1] < 0x80 ? 2 : nil
        case UInt8(ascii: "l"):
            return text[start] < 0x80 && lower(start + 1) == UInt8(ascii: "l") && text[start + 1] < 0x80 ? 2 : nil
        default:
            // ſ (U+017F, C5 BF) folds to s.
            return text[start] == 0xC5 && start + 1 < text.count && text[start + 1] == 0xBF ? 2 : nil
        }
    }
}
