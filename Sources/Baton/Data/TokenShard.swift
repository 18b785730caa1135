import CBatonSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A token shard in llm.c's format: a header of 256 little-endian int32 (magic 20240520,
/// version 1, token count, the rest zero) followed by the tokens as little-endian uint16.
///
/// The file stays open and is read with pread, never memory-mapped: a shard truncated under a
/// running trainer gives a short read (an error), not a SIGBUS. Every read first checks that the
/// file is still the one that was validated (same inode, size and modification time).
public final class TokenShard {
    public static let magic: Int32 = 20240520
    public static let version: Int32 = 1
    public static let headerBytes = 256 * 4

    public let url: URL
    public let tokenCount: Int
    public let fileSize: Int
    /// CRC-32C of the tokens, taken while they were validated: ranks compare it, since two files
    /// of one size at one path (on two nodes) can still hold other tokens.
    public private(set) var contentDigest: UInt32 = 0
    private let fd: Int32
    private let identity: stat

    /// Opens and validates a shard: header, size, and every token id below `vocabularySize`.
    public init(url: URL, vocabularySize: Int) throws {
        self.url = url
        let path = url.path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        self.fd = fd
        guard fd >= 0 else {
            if errno == ENOENT { throw BatonError("\(path): no such shard file") }
            throw BatonError("\(path): cannot read shard (\(String(cString: strerror(errno))))")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else { close(fd); throw BatonError("\(path): cannot stat shard") }
        identity = info
        fileSize = Int(info.st_size)
        var header = [Int32](repeating: 0, count: 3)
        let headerRead = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 12, 0) }
        do {
            guard fileSize >= TokenShard.headerBytes, headerRead == 12 else {
                throw BatonError(
                    "\(path): shard is \(fileSize) bytes, shorter than its 1024-byte header; rewrite it with baton "
                        + "prepare"
                )
            }
            header = header.map { Int32(littleEndian: $0) }
            guard header[0] == TokenShard.magic else {
                throw BatonError(
                    "\(path): not a token shard (magic \(header[0]), expected \(TokenShard.magic)); rewrite it with "
                        + "baton prepare"
                )
            }
            guard header[1] == TokenShard.version else {
                throw BatonError(
                    "\(path): shard version \(header[1]) is not supported (expected \(TokenShard.version))")
            }
            let count = Int(header[2])
            guard count >= 0 else { throw BatonError("\(path): negative token count \(count) in header") }
            let expected = TokenShard.headerBytes + 2 * count
            guard fileSize == expected else {
                let what = fileSize < expected ? "truncated" : "longer than its header says"
                throw BatonError(
                    "\(path): shard is \(what): header says \(count) tokens (\(expected) bytes), file has "
                        + "\(fileSize) bytes"
                )
            }
            tokenCount = count
            try validateTokens(vocabularySize: vocabularySize)
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    /// Reads the tokens in 1M-token chunks and checks each is below the vocabulary size.
    private func validateTokens(vocabularySize: Int) throws {
        let chunk = 1 << 20
        var buffer = [UInt16](repeating: 0, count: chunk)
        var start = 0
        while start < tokenCount {
            let count = min(chunk, tokenCount - start)
            try buffer.withUnsafeMutableBufferPointer { try read(start: start, count: count, into: $0.baseAddress!) }
            for i in 0..<count where Int(UInt16(littleEndian: buffer[i])) >= vocabularySize {
                throw BatonError(
                    "\(url.path): token \(UInt16(littleEndian: buffer[i])) at position \(start + i) is not below "
                        + "the vocabulary size \(vocabularySize); pass --vocab-size or re-prepare the data"
                )
            }
            contentDigest = buffer.withUnsafeBytes { baton_crc32c(contentDigest, $0.baseAddress, count * 2) }
            start += count
        }
    }

    /// Raw little-endian tokens [start, start + count), after checking the file has not changed.
    private func read(start: Int, count: Int, into destination: UnsafeMutablePointer<UInt16>) throws {
        precondition(start >= 0 && start + count <= tokenCount)
        try checkUnchanged()
        let bytes = count * 2
        var done = 0
        while done < bytes {
            let n = pread(
                fd, UnsafeMutableRawPointer(destination) + done, bytes - done,
                off_t(TokenShard.headerBytes + start * 2 + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw BatonError(
                    "\(url.path): shard changed during the run (read past its end at token \(start)); the last "
                        + "checkpoint is intact: restore the file and resume"
                )
            }
            done += n
        }
    }

    /// The shard must still be the file that was validated: same inode, size and modification time.
    public func checkUnchanged() throws {
        var now = stat(), atPath = stat()
        guard fstat(fd, &now) == 0, stat(url.path, &atPath) == 0 else {
            throw BatonError(
                "\(url.path): shard disappeared during the run; the last checkpoint is intact: restore the file and "
                    + "resume"
            )
        }
        let same =
            now.st_size == identity.st_size && now.st_mtim.tv_sec == identity.st_mtim.tv_sec
            && now.st_mtim.tv_nsec == identity.st_mtim.tv_nsec && atPath.st_ino == identity.st_ino
            && atPath.st_dev == identity.st_dev
        guard same else {
            throw BatonError(
                "\(url.path): shard changed during the run (size \(identity.st_size) -> \(atPath.st_size) bytes, or "
                    + "rewritten); the last checkpoint is intact: restore the file and resume, or resume with "
                    + "--allow-data-change"
            )
        }
    }

    /// Copies tokens [start, start + count) as int32 into `destination`.
    public func copyTokens(start: Int, count: Int, into destination: UnsafeMutablePointer<Int32>) throws {
        var raw = [UInt16](repeating: 0, count: count)
        try raw.withUnsafeMutableBufferPointer { try read(start: start, count: count, into: $0.baseAddress!) }
        for i in 0..<count { destination[i] = Int32(UInt16(littleEndian: raw[i])) }
    }

    public func tokens(start: Int, count: Int) throws -> [Int32] {
        var result = [Int32](repeating: 0, count: count)
        try result.withUnsafeMutableBufferPointer { try copyTokens(start: start, count: count, into: $0.baseAddress!) }
        return result
    }

    /// Writes tokens as a shard, atomically (temporary file, then rename).
    public static func write(tokens: [UInt16], to url: URL) throws {
        guard tokens.count <= Int(Int32.max) else {
            throw BatonError("\(url.path): \(tokens.count) tokens do not fit one shard")
        }
        var header = [Int32](repeating: 0, count: 256)
        header[0] = magic
        header[1] = version
        header[2] = Int32(tokens.count)
        var data = Data(capacity: headerBytes + 2 * tokens.count)
        header.map { $0.littleEndian }.withUnsafeBufferPointer {
            data.append(UnsafeRawBufferPointer($0).bindMemory(to: UInt8.self))
        }
        tokens.map { $0.littleEndian }.withUnsafeBufferPointer {
            data.append(UnsafeRawBufferPointer($0).bindMemory(to: UInt8.self))
        }
        do { try data.write(to: url, options: .atomic) } catch {
            throw BatonError("\(url.path): cannot write shard (\(error.localizedDescription))")
        }
    }
}
