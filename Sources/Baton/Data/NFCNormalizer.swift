import Foundation

/// Unicode NFC (Hugging Face's NFC normalizer, which Qwen2's tokenizer.json names), fast where the
/// text is already NFC. Text is cut before every scalar that nothing can change or combine with
/// what precedes it (combining class 0 and NFC_Quick_Check=Yes: UAX #15's boundaries); the stretches
/// between cuts that hold any other scalar go through Foundation's normalization (slow: about 1 MB/s),
/// the rest is copied as it is. So ASCII, CJK and most Latin text costs one pass.
enum NFCNormalizer {
    /// Whether text made of `bytes` (valid UTF-8) is certainly NFC already.
    static func isInert(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var i = 0
        while i < bytes.count {
            if bytes[i] < 0x80 { i += 1; continue }
            let (_, n, value) = PreTokenizer.scalar(in: bytes, at: i)
            if !isInert(value) { return false }
            i += n
        }
        return true
    }

    /// NFC of `bytes` (valid UTF-8), appended to `output`.
    static func normalize(_ bytes: UnsafeBufferPointer<UInt8>, into output: inout [UInt8]) {
        var i = 0
        var stretch = 0  // where the stretch that may change starts (a boundary), when pending
        var pending = false
        func flush(upTo end: Int) {
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[stretch..<end]), as: UTF8.self)
            output += Array(text.precomposedStringWithCanonicalMapping.utf8)
            pending = false
        }
        while i < bytes.count {
            let n: Int, value: UInt32
            if bytes[i] < 0x80 {
                (n, value) = (1, UInt32(bytes[i]))
            } else {
                let scalar = PreTokenizer.scalar(in: bytes, at: i)
                (n, value) = (scalar.1, scalar.2)
            }
            if isInert(value) {
                // A boundary before this scalar: a stretch in progress ends here.
                if pending { flush(upTo: i) }
                stretch = i
                output += bytes[i..<(i + n)]
            } else {
                // The stretch starts at the last boundary: the inert scalar before it is in it too.
                if !pending {
                    output.removeLast(i - stretch)
                    pending = true
                }
            }
            i += n
        }
        if pending { flush(upTo: bytes.count) }
    }

    /// Combining class 0 and NFC_Quick_Check=Yes: nothing before it combines with it or anything
    /// after it (conservatively: whole blocks whose vowel signs or jamo compose count as not inert).
    static func isInert(_ value: UInt32) -> Bool {
        if value < 0x300 { return true }
        if value < 0x10000 { return bmpInert[Int(value)] }
        return compute(value)
    }

    private static let bmpInert: [Bool] = (0..<0x10000).map { compute(UInt32($0)) }

    private static func compute(_ value: UInt32) -> Bool {
        guard let scalar = Unicode.Scalar(value) else { return false }
        // Blocks with class-0 scalars that compose with the one before them (NFC_Quick_Check=Maybe):
        // Indic vowel signs, Myanmar, Hangul jamo, Balinese, and the supplementary planes' scripts.
        let composing: [ClosedRange<UInt32>] = [
            0x0900...0x0DFF, 0x1000...0x109F, 0x1100...0x11FF, 0x1B00...0x1B7F, 0x11000...0x1FFFF,
        ]
        if composing.contains(where: { $0.contains(value) }) { return false }
        let properties = scalar.properties
        // Full_Composition_Exclusion is NFC_Quick_Check=No.
        return properties.canonicalCombiningClass == .notReordered && !properties.isFullCompositionExclusion
    }
}
