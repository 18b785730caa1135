import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Whole-file writes that a crash cannot leave half done: write a temporary sibling, fsync it,
/// rename it over the target, fsync the folder.
public enum AtomicFile {
    /// Writes all of `data` to `fd` (retrying interrupted writes) and fsyncs it: 0, or the errno
    /// of the first failure.
    static func writeAll(_ data: Data, to fd: Int32) -> Int32 {
        var failure: Int32 = 0
        data.withUnsafeBytes { raw in
            var written = 0
            while written < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno; return
                }
                written += n
            }
        }
        if failure == 0, fsync(fd) != 0 { failure = errno }
        return failure
    }

    public static func write(_ data: Data, to url: URL) throws {
        let folder = url.deletingLastPathComponent()
        let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // Named by the target: the temporary sibling is this function's business, not the user's.
        guard fd >= 0 else { throw BatonError("\(url.path): cannot write (\(String(cString: strerror(errno))))") }
        let code = writeAll(data, to: fd)
        let failure = code == 0 ? nil : String(cString: strerror(code))
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
