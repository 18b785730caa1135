import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Path and process checks the commands that write folders share (export, prepare, train, plot):
/// where a path really leads, whether one lies inside another, whether a leftover's process is a
/// running baton.
public enum FilePaths {
    /// A path with symbolic links and `.`/`..` resolved: the longest part that exists through
    /// realpath, the rest as written.
    public static func canonical(_ url: URL) -> String {
        var existing = url.standardizedFileURL
        var rest: [String] = []
        while true {
            if let resolved = realpath(existing.path, nil) {
                defer { free(resolved) }
                var result = URL(fileURLWithPath: String(cString: resolved))
                for component in rest.reversed() { result.appendPathComponent(component) }
                return result.standardizedFileURL.path
            }
            guard existing.path != "/" else { return url.standardizedFileURL.path }
            rest.append(existing.lastPathComponent)
            existing = existing.deletingLastPathComponent()
        }
    }

    /// Whether `inner` is `outer` or lies inside it (both canonical).
    public static func within(_ inner: String, _ outer: String) -> Bool {
        inner == outer || inner.hasPrefix(outer == "/" ? "/" : outer + "/")
    }

    /// Whether `pid` is a live baton process: alive, and (where /proc can tell) running a program
    /// named baton. A PID that a finished baton left and another program now has is not.
    public static func isLiveBaton(_ pid: pid_t) -> Bool {
        guard pid > 0, pid != getpid() else { return pid == getpid() }
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        // No /proc: liveness only.
        guard FileManager.default.fileExists(atPath: "/proc/self/cmdline") else { return true }
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else {
            // Gone since, or a zombie (empty command line): not running.
            return false
        }
        let program = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
        return URL(fileURLWithPath: program).lastPathComponent == "baton"
    }
}
