import CBatonSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Fills val then train shards in order, in a dataset's temporary folder, and writes each one
/// complete (temporary file, fsync, rename). Memory is one shard of tokens.
///
/// With `valTokens` given, the first that many tokens go to val shards, the rest to train shards.
/// Without it (the default), validation is the first tenth of the tokens, at most one shard:
/// min(shardTokens, max(1, total / 10)). The total is known only at the end, so the first shard
/// is written as NAME_val_000000.bin and, if the input turns out to hold fewer than ten shards
/// of tokens, read back at the end and cut in two: its first total/10 tokens stay NAME_val_000000,
/// the rest become NAME_train_000001 and the later train shards are renamed one index up.
/// `Token` is UInt16 (GPT-2's shard format) or UInt32 (Llama 3's, for vocabularies past 65,536).
final class ShardSequence<Token: FixedWidthInteger & UnsignedInteger> {
    /// A shard written: its file name, token count and CRC-32C of its tokens (as TokenShard's).
    struct Shard { var name: String; let tokens: Int; let crc32c: UInt32; let validation: Bool }

    let folder: URL, name: String, shardTokens: Int, valTarget: Int?
    private var buffer: [Token] = []
    private(set) var total = 0, trainTokens = 0, valTokensWritten = 0
    private(set) var shards: [Shard] = []

    init(folder: URL, name: String, shardTokens: Int, valTokens: Int?) {
        self.folder = folder
        self.name = name
        self.shardTokens = shardTokens
        valTarget = valTokens
        // Pages are touched only as tokens arrive: a small corpus does not pay for a whole shard.
        buffer.reserveCapacity(shardTokens)
    }

    /// The default validation size for `total` tokens.
    static func defaultValTokens(total: Int, shardTokens: Int) -> Int { min(shardTokens, max(1, total / 10)) }

    /// Whether the shard being filled is validation (by default: the first one, until finish()).
    private var validating: Bool {
        guard let valTarget else { return shards.isEmpty }
        return trainTokens == 0 && valTokensWritten < valTarget
    }

    func append(_ tokens: [Int32]) throws {
        for token in tokens {
            buffer.append(Token(truncatingIfNeeded: token))
            total += 1
            let limit = valTarget != nil && validating ? min(shardTokens, valTarget! - valTokensWritten) : shardTokens
            if buffer.count == limit { try flush() }
        }
    }

    func finish() throws {
        guard valTarget == nil, total > 0 else {
            if !buffer.isEmpty { try flush() }
            return
        }
        let val = ShardSequence.defaultValTokens(total: total, shardTokens: shardTokens)
        if shards.isEmpty {  // less than one shard in all: it is still in the buffer
            try write(buffer[..<val], validation: true, index: 0)
            if val < buffer.count { try write(buffer[val...], validation: false, index: 1) }
            buffer.removeAll()
            return
        }
        if !buffer.isEmpty { try flush() }
        guard val < shardTokens else { return }  // ten shards or more: the first shard is validation, as written
        try readBack(shards[0])
        for index in stride(from: shards.count - 1, through: 1, by: -1) {
            let renamed = shardName(validation: false, index: index + 1)
            guard
                rename(
                    folder.appendingPathComponent(shards[index].name).path, folder.appendingPathComponent(renamed).path)
                    == 0
            else {
                throw BatonError(
                    "\(folder.path): cannot rename \(shards[index].name) (\(String(cString: strerror(errno))))")
            }
            shards[index].name = renamed
        }
        let later = Array(shards.dropFirst())
        shards = []
        valTokensWritten = 0
        try write(buffer[..<val], validation: true, index: 0)
        try write(buffer[val...], validation: false, index: 1)
        shards += later
        buffer.removeAll()
    }

    private func flush() throws {
        try write(buffer[...], validation: validating, index: shards.count)
        buffer.removeAll(keepingCapacity: true)
    }

    private func shardName(validation: Bool, index: Int) -> String {
        String(format: "%@_%@_%06d.bin", name, validation ? "val" : "train", index)
    }

    private func write(_ tokens: ArraySlice<Token>, validation: Bool, index: Int) throws {
        let name = shardName(validation: validation, index: index)
        let crc = try ShardSequence.writeShard(tokens, to: folder.appendingPathComponent(name))
        shards.append(Shard(name: name, tokens: tokens.count, crc32c: crc, validation: validation))
        if validation { valTokensWritten += tokens.count } else { trainTokens += tokens.count }
        DatasetFolder.faultHook?("after-shard")
    }

    /// The first shard's tokens, back into the buffer (whose capacity is one shard).
    private func readBack(_ shard: Shard) throws {
        let url = folder.appendingPathComponent(shard.name)
        buffer.removeAll(keepingCapacity: true)
        buffer.append(contentsOf: repeatElement(0, count: shard.tokens))
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BatonError("\(url.path): cannot read back (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        let bytes = shard.tokens * MemoryLayout<Token>.size
        var done = 0
        try buffer.withUnsafeMutableBytes { raw in
            while done < bytes {
                let n = pread(fd, raw.baseAddress! + done, bytes - done, off_t(TokenShard.headerBytes + done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw BatonError("\(url.path): short read while reading the shard back") }
                done += n
            }
        }
    }

    /// The header, then the tokens as they are (little-endian hosts), into a temporary file that
    /// is fsynced and renamed into place: no copy of the shard in memory, no half shard on disk.
    /// Returns the tokens' CRC-32C.
    /// `format`: the header's (default: llm.c's for the token width).
    static func writeShard(_ tokens: ArraySlice<Token>, to url: URL, format: TokenShard.Format? = nil) throws -> UInt32
    {
        guard tokens.count <= Int(Int32.max) else {
            throw BatonError("\(url.path): \(tokens.count) tokens do not fit one shard")
        }
        let temporary = url.deletingLastPathComponent().appendingPathComponent(
            ".\(url.lastPathComponent).tmp-\(getpid())")
        try? FileManager.default.removeItem(at: temporary)
        do {
            let format = format ?? (Token.bitWidth == 16 ? .uint16 : .uint32)
            let writer = try FileWriter(
                url: temporary, expectedBytes: TokenShard.headerBytes + format.tokenBytes * tokens.count)
            try TokenShard.header(format, count: tokens.count).withUnsafeBytes { try writer.write($0) }
            try tokens.withUnsafeBytes { try writer.write($0) }
            try writer.sync()
            writer.close()
            guard rename(temporary.path, url.path) == 0 else {
                throw BatonError("\(url.path): cannot move the shard into place (\(String(cString: strerror(errno))))")
            }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
        return tokens.withUnsafeBytes { baton_crc32c(0, $0.baseAddress, $0.count) }
    }
}
