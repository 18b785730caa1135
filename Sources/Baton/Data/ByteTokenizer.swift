/// The byte-level tokenizer: each byte of UTF-8 text is one token, vocabulary 256.
public enum ByteTokenizer {
    public static let vocabularySize = 256

    public static func encode(_ text: String) -> [Int32] { text.utf8.map { Int32($0) } }

    /// Decodes tokens to text; byte sequences that are not valid UTF-8 become U+FFFD.
    public static func decode(_ tokens: [Int32]) -> String {
        String(decoding: tokens.map { UInt8(clamping: $0) }, as: UTF8.self)
    }
}
