import CBatonSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A token shard in one of llm.c's two formats: a header of 256 little-endian int32 (magic,
/// version, token count, the rest zero) followed by the tokens, little-endian: GPT-2's (magic
/// 20240520, version 1, uint16 tokens) or Llama 3's (magic 20240801, version 7, uint32 tokens), for
/// vocabularies past 65,536. The header says which; a reader takes either. Baton adds a third,
/// for supervised fine-tuning: `masked` (magic 20261206, version 1), uint32 entries whose low 31
/// bits are the token and whose top bit says the token is trained on (a target the loss counts:
/// an assistant's reply and its end marker); `copyTokens` gives the tokens alone.
///
/// The file stays open and is read with pread, never memory-mapped: a shard truncated under a
/// running trainer gives a short read (an error), not a SIGBUS. Every read first checks that the
/// file is still the one that was validated (same inode, size and modification time).
public final class TokenShard {
    /// llm.c's formats, by the width of a token.
    public enum Format: Sendable, CaseIterable {
        case uint16, uint32, masked

        public var magic: Int32 {
            switch self {
            case .uint16: 20240520
            case .uint32: 20240801
            case .masked: 20261206
            }
        }
        public var version: Int32 { self == .uint32 ? 7 : 1 }
        public var tokenBytes: Int { self == .uint16 ? 2 : 4 }
        /// A masked shard's flag bit: set on a token that is a trained-on target.
        public static let trainedOnBit = UInt32(1) << 31

        /// uint16 wherever every id of the vocabulary fits (GPT-2's shards stay as llm.c writes them).
        public static func forVocabulary(_ size: Int) -> Format { size <= 65536 ? .uint16 : .uint32 }
    }

    /// GPT-2's format's header (TokenShard.Format.uint16).
    public static let magic = Format.uint16.magic
    public static let version = Format.uint16.version
    public static let headerBytes = 256 * 4

    public let url: URL
    public let format: Format
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
            guard let format = Format.allCases.first(where: { $0.magic == header[0] }) else {
                throw BatonError(
                    "\(path): not a token shard (magic \(header[0]), expected \(Format.uint16.magic), "
                        + "\(Format.uint32.magic) or \(Format.masked.magic)); rewrite it with baton prepare"
                )
            }
            guard header[1] == format.version else {
                throw BatonError(
                    "\(path): shard version \(header[1]) is not supported (expected \(format.version) with magic "
                        + "\(format.magic))")
            }
            self.format = format
            let count = Int(header[2])
            guard count >= 0 else { throw BatonError("\(path): negative token count \(count) in header") }
            let expected = TokenShard.headerBytes + format.tokenBytes * count
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
        var buffer = [Int32](repeating: 0, count: chunk)
        var start = 0
        while start < tokenCount {
            let count = min(chunk, tokenCount - start)
            try buffer.withUnsafeMutableBufferPointer {
                try copyTokens(start: start, count: count, into: $0.baseAddress!, digest: &contentDigest)
            }
            // Read as uint32, an id past Int32.max shows as negative: compare it unsigned.
            for i in 0..<count where Int(UInt32(bitPattern: buffer[i])) >= vocabularySize {
                throw BatonError(
                    "\(url.path): token \(UInt32(bitPattern: buffer[i])) at position \(start + i) is not below "
                        + "the vocabulary size \(vocabularySize); pass --vocab-size or re-prepare the data"
                )
            }
            start += count
        }
    }

    /// Raw little-endian tokens [start, start + count) into `destination` (count x the format's
    /// token bytes), after checking the file has not changed.
    private func read(start: Int, count: Int, into destination: UnsafeMutableRawPointer) throws {
        precondition(start >= 0 && start + count <= tokenCount)
        try checkUnchanged()
        let width = format.tokenBytes
        let bytes = count * width
        var done = 0
        while done < bytes {
            let n = pread(fd, destination + done, bytes - done, off_t(TokenShard.headerBytes + start * width + done))
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
        var unused: UInt32 = 0
        try copyTokens(start: start, count: count, into: destination, digest: &unused)
    }

    /// The same, adding the raw tokens to a CRC-32C (a masked shard's flags included). uint32
    /// tokens are read in place; uint16 ones into the first half and widened from the last
    /// backwards, so no token is overwritten unread. A masked shard's flags go to `trainedOn`
    /// when given, and are cleared from the tokens.
    private func copyTokens(
        start: Int, count: Int, into destination: UnsafeMutablePointer<Int32>, digest: inout UInt32,
        trainedOn: UnsafeMutablePointer<Bool>? = nil
    ) throws {
        try read(start: start, count: count, into: destination)
        digest = baton_crc32c(digest, destination, count * format.tokenBytes)
        switch format {
        case .masked:
            for i in 0..<count {
                let entry = UInt32(littleEndian: UInt32(bitPattern: destination[i]))
                trainedOn?[i] = entry & Format.trainedOnBit != 0
                destination[i] = Int32(bitPattern: entry & ~Format.trainedOnBit)
            }
        case .uint32:
            for i in 0..<count { destination[i] = Int32(littleEndian: destination[i]) }
        case .uint16:
            let wide = UnsafeMutableRawPointer(destination)
            for i in stride(from: count - 1, through: 0, by: -1) {
                destination[i] = Int32(UInt16(littleEndian: wide.load(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        }
    }

    /// Copies tokens [start, start + count) into `destination` and, for each, whether it is trained
    /// on into `trainedOn` (every token of an unmasked shard is).
    public func copyTokens(
        start: Int, count: Int, into destination: UnsafeMutablePointer<Int32>, trainedOn: UnsafeMutablePointer<Bool>
    ) throws {
        var unused: UInt32 = 0
        if format != .masked { trainedOn.update(repeating: true, count: count) }
        try copyTokens(start: start, count: count, into: destination, digest: &unused, trainedOn: trainedOn)
    }

    public func tokens(start: Int, count: Int) throws -> [Int32] {
        var result = [Int32](repeating: 0, count: count)
        try result.withUnsafeMutableBufferPointer { try copyTokens(start: start, count: count, into: $0.baseAddress!) }
        return result
    }

    /// Writes tokens as a GPT-2 (uint16) shard, atomically (temporary file, then rename).
    public static func write(tokens: [UInt16], to url: URL) throws {
        try write(tokens, format: .uint16, to: url)
    }

    /// Writes tokens as a Llama 3 (uint32) shard, atomically.
    public static func write(uint32Tokens tokens: [UInt32], to url: URL) throws {
        try write(tokens, format: .uint32, to: url)
    }

    private static func write<Token: FixedWidthInteger>(_ tokens: [Token], format: Format, to url: URL) throws {
        guard tokens.count <= Int(Int32.max) else {
            throw BatonError("\(url.path): \(tokens.count) tokens do not fit one shard")
        }
        var data = Data(capacity: headerBytes + format.tokenBytes * tokens.count)
        header(format, count: tokens.count).withUnsafeBytes { data.append(contentsOf: $0) }
        tokens.map { $0.littleEndian }.withUnsafeBytes { data.append(contentsOf: $0) }
        do { try data.write(to: url, options: .atomic) } catch {
            throw BatonError("\(url.path): cannot write shard (\(error.localizedDescription))")
        }
    }

    /// A shard's header, little-endian.
    static func header(_ format: Format, count: Int) -> [Int32] {
        var header = [Int32](repeating: 0, count: 256)
        header[0] = format.magic
        header[1] = format.version
        header[2] = Int32(count)
        return header.map { $0.littleEndian }
    }
}
