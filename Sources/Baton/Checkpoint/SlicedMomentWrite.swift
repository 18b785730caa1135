import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// ZeRO-1's save of the AdamW moments: no rank holds them whole, so every rank writes its slice's
/// bytes of the one optimizer.safetensors, in parallel, at their places in it. The file is byte for
/// byte the one an unsharded save writes (the header depends on the layout alone; the data are the
/// moments' stored elements in layout order, first moments then second), so a checkpoint keeps
/// today's format, verifies as any other, and loads at any world size, with or without --zero.
///
/// Rank 0 runs `lead` from inside CheckpointStore.save (as its optimizer writer): it creates the
/// file at full size with the header, hands its path to the others, writes its own slice, waits for
/// every rank's, and reads the file back for its CRC32C. The other ranks run `follow` meanwhile.
/// Every rank takes every collective step, even one that failed before it, so a failure on any
/// rank is an error on every rank, never a rank left waiting.
final class SlicedMomentWrite {
    private let communicator: Communicator
    private let layout: ParameterLayout
    private let device: Device
    /// This rank's slice of the flat layout, and its moments (the optimizer's).
    private let slice: Range<Int>
    private let firstMoment: Tensor
    private let secondMoment: Tensor
    /// Whether rank 0 has told the others where to write (or that there is nothing to write).
    private var released = false

    init(communicator: Communicator, layout: ParameterLayout, device: Device, optimizer: AdamW) {
        self.communicator = communicator
        self.layout = layout
        self.device = device
        slice = optimizer.slice
        firstMoment = optimizer.firstMoment
        secondMoment = optimizer.secondMoment
    }

    private var header: Data {
        get throws {
            try TensorFile.header(
                entries: CheckpointStore.momentEntries(layout), metadata: CheckpointStore.momentMetadata)
        }
    }

    /// Rank 0: writes the optimizer file at `url` together with the other ranks.
    func lead(_ url: URL) throws -> CheckpointState.FileCheck {
        let head = try header
        let bytes = head.count + 2 * layout.storedCount * 4
        let created = Result { try create(url, header: head, bytes: bytes) }
        released = true
        _ = try communicator.broadcast(created.isSuccess ? url.path : "")
        try created.get()
        try writeSlice(to: url, headerBytes: head.count)
        return CheckpointState.FileCheck(bytes: bytes, crc32c: TensorFile.hex(try CheckpointStore.crc32c(of: url)))
    }

    /// Rank 0, after its save ended: when it ended before `lead` (a failure, or a checkpoint it
    /// would not replace), tells the others there is nothing to write.
    func releaseIfUnreached() throws {
        guard !released else { return }
        released = true
        _ = try communicator.broadcast("")
    }

    /// The other ranks: their slices into the file rank 0 names, if it names one.
    func follow() throws {
        let path = try communicator.broadcast("")
        guard !path.isEmpty else { return }
        try writeSlice(to: URL(fileURLWithPath: path), headerBytes: try header.count)
    }

    /// The file at its full size, holding the header (and zeros until the ranks write).
    private func create(_ url: URL, header: Data, bytes: Int) throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw FileWriter.error(url, "cannot create", errno, bytes) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(bytes)) == 0 else { throw FileWriter.error(url, "cannot size", errno, bytes) }
        try header.withUnsafeBytes { try writeAll(fd, $0, at: 0, url: url, bytes: bytes) }
    }

    /// This rank's elements of both moments, at their offsets in the file, fsynced; then every
    /// rank learns whether all of them did.
    private func writeSlice(to url: URL, headerBytes: Int) throws {
        let written = Result { try writeOwnElements(to: url, headerBytes: headerBytes) }
        let agreed = Result {
            try communicator.agree(
                written.isSuccess ? 0 : 1, expected: 0, "could not write its slice of the AdamW moments")
        }
        try written.get()
        try agreed.get()
    }

    private func writeOwnElements(to url: URL, headerBytes: Int) throws {
        let fileBytes = headerBytes + 2 * layout.storedCount * 4
        for moment in [firstMoment, secondMoment] where !(try device.globalNormSquared(moment)).isFinite {
            throw BatonError("rank \(communicator.rank): the AdamW moments are not finite; no checkpoint written")
        }
        let fd = open(url.path, O_WRONLY)
        guard fd >= 0 else { throw FileWriter.error(url, "cannot open", errno, fileBytes) }
        defer { close(fd) }
        try device.withHostMemory(of: firstMoment) { m in
            try device.withHostMemory(of: secondMoment) { v in
                // The stored ranges (padding left out) in file order; `before` stored elements precede each.
                var before = 0
                for range in layout.storedRanges {
                    defer { before += range.count }
                    let part = range.clamped(to: slice)
                    guard !part.isEmpty else { continue }
                    let local = (part.lowerBound - slice.lowerBound)..<(part.upperBound - slice.lowerBound)
                    let index = before + part.lowerBound - range.lowerBound
                    for (values, base) in [(m, 0), (v, layout.storedCount)] {
                        try writeAll(
                            fd, UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: values[local])),
                            at: headerBytes + 4 * (base + index), url: url, bytes: fileBytes)
                    }
                }
            }
        }
        guard fsync(fd) == 0 else { throw FileWriter.error(url, "fsync failed", errno, fileBytes) }
    }

    private func writeAll(
        _ fd: Int32, _ data: UnsafeRawBufferPointer, at offset: Int, url: URL, bytes: Int
    ) throws {
        var done = 0
        while done < data.count {
            let n = pwrite(fd, data.baseAddress! + done, min(data.count - done, FileWriter.chunk), off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileWriter.error(url, "write failed", errno, bytes)
            }
            done += n
        }
    }
}

extension Result {
    fileprivate var isSuccess: Bool {
        if case .success = self { return true }
        return false
    }
}
