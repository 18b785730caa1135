import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One writer per run folder: an exclusive flock on RUN/.lock, held for the life of the process.
/// The kernel drops it when the holder dies, however it dies, so a stale lock never blocks.
public final class RunLock {
    public let url: URL
    private let fd: Int32

    public init(runFolder: URL) throws {
        do { try FileManager.default.createDirectory(at: runFolder, withIntermediateDirectories: true) } catch {
            throw BatonError("--out \(runFolder.path): cannot create run folder (\(error.localizedDescription))")
        }
        url = runFolder.appendingPathComponent(".lock")
        fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw BatonError("\(url.path): cannot open lock file (\(String(cString: strerror(errno))))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder =
                (try? String(contentsOf: url, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            close(fd)
            throw BatonError(
                "--out \(runFolder.path) is in use by baton process \(holder.isEmpty ? "?" : holder) (it holds "
                    + "\(url.path)); wait for it to finish or stop it first"
            )
        }
        let pid = Data("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    deinit { close(fd) }
}
