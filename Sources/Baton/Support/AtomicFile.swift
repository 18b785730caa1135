import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Whole-file writes that a crash cannot leave half done: write a temporary sibling, fsync it,
/// rename it over the target, fsync the folder.
public enum AtomicFile {
    public static func write(_ data: Data, to url: URL) throws {
        let folder = url.deletingLastPathComponent()
        let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // Named by the target: the temporary sibling is this function's business, not the user's.
        guard fd >= 0 else { throw BatonError("\(url.path): cannot write (\(String(cString: strerror(errno))))") }
        var failure: String?
        data.withUnsafeBytes { raw in
            var written = 0
            while written < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno)); return
                }
                written += n
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        close(fd)
        if let failure {
            unlink(temporary.path)
            throw BatonError("\(url.path): write failed (\(failure)); the previous file is untouched")
        }
        guard rename(temporary.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary.path)
            throw BatonError("\(url.path): cannot move into place (\(reason))")
        }
        syncFolder(folder)
    }

    public static func syncFolder(_ folder: URL) {
        let fd = open(folder.path, O_RDONLY | O_DIRECTORY)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}
