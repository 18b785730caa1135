import CBatonSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Streams a safetensors file whose data section is one flat float32 buffer, tensor after tensor
/// in the order given, and fsyncs it. Returns its size and CRC32C.
enum TensorFile {
    struct Entry {
        let name: String
        let shape: [Int]
        var count: Int { shape.reduce(1, *) }
    }

    static func header(entries: [Entry], metadata: [String: String]) throws -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        for entry in entries {
            header[entry.name] =
                ["dtype": "F32", "shape": entry.shape, "data_offsets": [offset, offset + entry.count * 4]]
                as [String: Any]
            offset += entry.count * 4
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // data section 8-byte aligned
        var data = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        return data
    }

    /// Writes the header and then `segments` back to back to `url` (a new file). Errors name the
    /// file and the reason (ENOSPC says how many bytes the file needed).
    static func write(
        _ url: URL, entries: [Entry], segments: [UnsafeBufferPointer<Float>], metadata: [String: String] = [:]
    ) throws -> CheckpointState.FileCheck {
        let valueCount = segments.reduce(0) { $0 + $1.count }
        precondition(entries.reduce(0) { $0 + $1.count } == valueCount, "tensor entries do not cover the buffers")
        let head = try header(entries: entries, metadata: metadata)
        let total = head.count + valueCount * 4
        let writer = try FileWriter(url: url, expectedBytes: total)
        defer { writer.close() }
        try head.withUnsafeBytes { try writer.write($0) }
        for segment in segments { try writer.write(UnsafeRawBufferPointer(segment)) }
        try writer.sync()
        return CheckpointState.FileCheck(bytes: total, crc32c: hex(writer.crc))
    }

    static func hex(_ crc: UInt32) -> String {
        let digits = String(crc, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}

/// An unbuffered file writer that keeps a running CRC32C and turns errno into one-line errors.
final class FileWriter {
    let url: URL
    let expectedBytes: Int
    private var fd: Int32
    private(set) var crc: UInt32 = 0
    private(set) var written = 0
    static let chunk = 32 << 20

    init(url: URL, expectedBytes: Int) throws {
        self.url = url
        self.expectedBytes = expectedBytes
        fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw FileWriter.error(url, "cannot create", errno, expectedBytes) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard var pointer = bytes.baseAddress else { return }
        var remaining = bytes.count
        crc = baton_crc32c(crc, pointer, remaining)
        while remaining > 0 {
            let n = Glibc.write(fd, pointer, min(remaining, FileWriter.chunk))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileWriter.error(url, "write failed", errno, expectedBytes)
            }
            // Start writing this chunk back to disk now, so the final fsync has little left to do
            // and the page cache never fills with dirty pages that would throttle the writer.
            _ = baton_start_writeback(fd, Int64(written), Int64(n))
            pointer += n
            remaining -= n
            written += n
        }
    }

    func sync() throws {
        guard fsync(fd) == 0 else { throw FileWriter.error(url, "fsync failed", errno, expectedBytes) }
    }

    func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    deinit { close() }

    static func error(_ url: URL, _ what: String, _ code: Int32, _ bytes: Int) -> BatonError {
        .fileWriteFailed(path: url.path, what: what, code: code, neededBytes: bytes)
    }
}
