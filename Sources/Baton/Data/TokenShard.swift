import Foundation

/// A token shard in llm.c's format: a header of 256 little-endian int32 (magic 20240520,
/// version 1, token count, the rest zero) followed by the tokens as little-endian uint16.
public struct TokenShard {
    public static let magic: Int32 = 20240520
    public static let version: Int32 = 1
    public static let headerBytes = 256 * 4

    public let url: URL
    public let tokenCount: Int
    public let fileSize: Int
    private let data: Data  // memory-mapped

    /// Opens and validates a shard: header, size, and every token id below `vocabularySize`.
    public init(url: URL, vocabularySize: Int) throws {
        self.url = url
        let path = url.path
        guard FileManager.default.fileExists(atPath: path) else { throw BatonError("\(path): no such shard file") }
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw BatonError("\(path): cannot read shard (\(error.localizedDescription))")
        }
        guard data.count >= TokenShard.headerBytes else {
            throw BatonError("\(path): shard is \(data.count) bytes, shorter than its 1024-byte header; rewrite it with baton prepare")
        }
        let header = data.withUnsafeBytes { raw in (0..<3).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) } }
        guard header[0] == TokenShard.magic else {
            throw BatonError("\(path): not a token shard (magic \(header[0]), expected \(TokenShard.magic)); rewrite it with baton prepare")
        }
        guard header[1] == TokenShard.version else {
            throw BatonError("\(path): shard version \(header[1]) is not supported (expected \(TokenShard.version))")
        }
        let count = Int(header[2])
        guard count >= 0 else { throw BatonError("\(path): negative token count \(count) in header") }
        let expected = TokenShard.headerBytes + 2 * count
        guard data.count == expected else {
            let what = data.count < expected ? "truncated" : "longer than its header says"
            throw BatonError("\(path): shard is \(what): header says \(count) tokens (\(expected) bytes), file has \(data.count) bytes")
        }
        let badToken: (index: Int, value: Int)? = data.withUnsafeBytes { raw in
            let tokens = raw.baseAddress!.advanced(by: TokenShard.headerBytes).assumingMemoryBound(to: UInt16.self)
            for i in 0..<count where Int(UInt16(littleEndian: tokens[i])) >= vocabularySize {
                return (i, Int(UInt16(littleEndian: tokens[i])))
            }
            return nil
        }
        if let bad = badToken {
            throw BatonError("\(path): token \(bad.value) at position \(bad.index) is not below the vocabulary size \(vocabularySize); pass --vocab-size or re-prepare the data")
        }
        self.data = data
        self.tokenCount = count
        self.fileSize = data.count
    }

    /// Copies tokens [start, start + count) as int32 into `destination`.
    public func copyTokens(start: Int, count: Int, into destination: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && start + count <= tokenCount)
        data.withUnsafeBytes { raw in
            let tokens = raw.baseAddress!.advanced(by: TokenShard.headerBytes).assumingMemoryBound(to: UInt16.self)
            for i in 0..<count { destination[i] = Int32(UInt16(littleEndian: tokens[start + i])) }
        }
    }

    public func tokens(start: Int, count: Int) -> [Int32] {
        [Int32](unsafeUninitializedCapacity: count) { buffer, initialized in
            copyTokens(start: start, count: count, into: buffer.baseAddress!)
            initialized = count
        }
    }

    /// Writes tokens as a shard, atomically (temporary file, then rename).
    public static func write(tokens: [UInt16], to url: URL) throws {
        guard tokens.count <= Int(Int32.max) else { throw BatonError("\(url.path): \(tokens.count) tokens do not fit one shard") }
        var header = [Int32](repeating: 0, count: 256)
        header[0] = magic
        header[1] = version
        header[2] = Int32(tokens.count)
        var data = Data(capacity: headerBytes + 2 * tokens.count)
        header.withUnsafeBufferPointer { data.append(UnsafeRawBufferPointer($0).bindMemory(to: UInt8.self)) }
        tokens.map { $0.littleEndian }.withUnsafeBufferPointer { data.append(UnsafeRawBufferPointer($0).bindMemory(to: UInt8.self)) }
        do { try data.write(to: url, options: .atomic) } catch {
            throw BatonError("\(url.path): cannot write shard (\(error.localizedDescription))")
        }
    }
}
