import CBatonSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where `baton export --hf DIR` may write, and how it replaces an earlier export.
///
/// - DIR may not be, contain, or lie inside what the export reads (the run, the checkpoint, the
///   weights file, the tokenizer folder) or any run folder: refused with or without --overwrite.
///   Paths are compared after resolving symbolic links and `..`.
/// - Every export holds `.baton-export` (JSON: the baton version, the source weights, the files it
///   wrote). `--overwrite` replaces only such a folder, and only while it holds nothing else.
/// - The new export is written into `.DIR.tmp-PID` beside DIR, then swapped in; right before the
///   swap DIR is checked again (something may have been put into it while the export was written).
///   With
///   renameat2(RENAME_EXCHANGE) DIR is at every instant the whole old export or the whole new one;
///   the old one, now at the temporary name, is deleted after. Where the file system cannot
///   exchange, the old export is renamed to `.DIR.old-PID`, the new one renamed in, the old one
///   deleted: between those two renames DIR is missing, and if the process dies there the next
///   export to DIR renames the old one back before anything else (a rollback). Leftover temporary
///   folders are deleted by that next export too, unless their PID is a live baton process (read
///   from /proc/PID/cmdline: a PID since reused by another program does not count).
/// - Deleting an old or leftover export deletes only the files an export writes (those its marker
///   lists, and the names below); anything else put there stays, with the folder, and is named.
public enum ExportFolder {
    public static let markerName = ".baton-export"
    /// Every name an export writes.
    static let writtenNames: Set<String> = [
        markerName, "config.json", "generation_config.json", "model.safetensors", "vocab.json", "merges.txt",
        "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json",
    ]

    /// Debug-build test hooks: `pause` is called at "written" (the new export complete beside DIR),
    /// "swapped" (exchanged, the old one not yet deleted) and "aside" (the fallback path: the old one
    /// moved aside, the new one not yet in); `withoutExchange` takes the fallback path.
    public struct Hooks {
        public var pause: (String) -> Void = { _ in }
        public var withoutExchange = false
        public init() {}
    }

    /// The marker's content.
    struct Marker: Codable {
        var batonVersion: String
        var source: String
        var files: [String]

        enum CodingKeys: String, CodingKey {
            case batonVersion = "baton_version", source, files
        }
    }

    // MARK: checks

    /// Refuses a DIR that is, holds, or lies inside one of `inputs` (what the export reads, named
    /// by what it is) or inside any run or checkpoint folder.
    static func refuseOverlap(_ folder: URL, inputs: [(what: String, url: URL)]) throws {
        let target = FilePaths.canonical(folder)
        let resolved = inputs.map { (what: $0.what, path: $0.url.path, canonical: FilePaths.canonical($0.url)) }
        // Same first, then holding, then inside: the message names the closest relation.
        if let same = resolved.first(where: { $0.canonical == target }) {
            throw BatonError("--hf \(folder.path) is the \(same.what) the export reads; choose a folder outside it")
        }
        if let held = resolved.first(where: { FilePaths.within($0.canonical, target) }) {
            throw BatonError(
                "--hf \(folder.path) holds the \(held.what) \(held.path) that the export reads; choose a folder "
                    + "outside it"
            )
        }
        if let outer = resolved.first(where: { FilePaths.within(target, $0.canonical) }) {
            throw BatonError(
                "--hf \(folder.path) is inside the \(outer.what) \(outer.path); choose a folder outside it")
        }
        // No folder above DIR may be a run or a checkpoint (their contents are Baton's own).
        var above = URL(fileURLWithPath: target).deletingLastPathComponent()
        while above.path != "/" {
            let fileManager = FileManager.default
            func has(_ name: String) -> Bool { fileManager.fileExists(atPath: above.appendingPathComponent(name).path) }
            if has(CheckpointStore.stateFile) && has(CheckpointStore.modelFile) || has("checkpoints/latest")
                || has(".lock") && has("checkpoints")
            {
                throw BatonError(
                    "--hf \(folder.path) is inside the run or checkpoint \(above.path); choose a folder outside it")
            }
            above.deleteLastPathComponent()
        }
    }

    /// For --overwrite: DIR must be an earlier export holding only what that export wrote.
    static func checkReplaceable(_ folder: URL) throws {
        var info = stat()
        guard lstat(folder.path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw BatonError(
                "--hf \(folder.path) exists and is not a folder; --overwrite replaces only an earlier Baton export: "
                    + "choose another --hf"
            )
        }
        let markerURL = folder.appendingPathComponent(markerName)
        guard let data = FileManager.default.contents(atPath: markerURL.path),
            let marker = try? JSONDecoder().decode(Marker.self, from: data)
        else {
            throw BatonError(
                "--hf \(folder.path) exists and is not a Baton export (no valid \(markerName)); --overwrite "
                    + "replaces only an earlier export: choose another --hf or move it away"
            )
        }
        let known = Set(marker.files + [markerName])
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        for name in names {
            var entry = stat()
            guard known.contains(name), lstat(folder.appendingPathComponent(name).path, &entry) == 0,
                entry.st_mode & S_IFMT == S_IFREG
            else {
                throw BatonError(
                    "--hf \(folder.path) holds \(name), which baton export did not write; move it out to let "
                        + "--overwrite replace the export, or choose another --hf"
                )
            }
        }
    }

    // MARK: writing

    /// Creates `url` and the folders above it, with one line naming --hf and the reason.
    static func makeFolder(_ url: URL, for folder: URL) throws {
        var missing: [URL] = []
        var probe = url
        var isFolder: ObjCBool = false
        while !FileManager.default.fileExists(atPath: probe.path, isDirectory: &isFolder) && probe.path != "/" {
            missing.append(probe)
            probe.deleteLastPathComponent()
        }
        if FileManager.default.fileExists(atPath: probe.path, isDirectory: &isFolder), !isFolder.boolValue {
            throw BatonError(
                "--hf \(folder.path): cannot create it: \(probe.path) is not a directory; choose a --hf folder in a "
                    + "writable place"
            )
        }
        for step in missing.reversed() where mkdir(step.path, 0o755) != 0 && errno != EEXIST {
            throw BatonError(
                "--hf \(folder.path): cannot create \(step.path) (\(reason(errno))); choose a --hf folder in a "
                    + "writable place"
            )
        }
    }

    /// Writes one file of the export into `temporary`, fsynced.
    static func write(_ data: Data, named name: String, in temporary: URL, for folder: URL) throws {
        let path = temporary.appendingPathComponent(name).path
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw writeFailed(folder, name, errno, data.count) }
        defer { close(fd) }
        let failure = AtomicFile.writeAll(data, to: fd)
        if failure != 0 { throw writeFailed(folder, name, failure, data.count) }
    }

    static func writeFailed(_ folder: URL, _ name: String, _ code: Int32, _ bytes: Int) -> BatonError {
        .fileWriteFailed(
            path: "--hf \(folder.path)",
            what: "cannot write \(name); choose a --hf folder in a writable place with room", code: code,
            neededBytes: bytes)
    }

    static func reason(_ code: Int32) -> String { String(cString: strerror(code)).lowercased() }

    /// The temporary names beside `folder` that an export by process `pid` uses.
    static func temporaryName(_ folder: URL, pid: pid_t) -> URL {
        folder.deletingLastPathComponent().appendingPathComponent(".\(folder.lastPathComponent).tmp-\(pid)")
    }
    static func asideName(_ folder: URL, pid: pid_t) -> URL {
        folder.deletingLastPathComponent().appendingPathComponent(".\(folder.lastPathComponent).old-\(pid)")
    }

    /// Deletes an export folder (old, leftover or unfinished): the regular files an export writes
    /// (its marker's list and `writtenNames`), then the folder. Returns nil when it is gone, else
    /// the first entry it kept, which export did not write.
    @discardableResult
    static func removeExport(_ url: URL) -> String? {
        var known = writtenNames
        if let data = FileManager.default.contents(atPath: url.appendingPathComponent(markerName).path),
            let marker = try? JSONDecoder().decode(Marker.self, from: data)
        {
            known.formUnion(marker.files.filter { !$0.contains("/") && $0 != "." && $0 != ".." })
        }
        var info = stat()
        guard lstat(url.path, &info) == 0 else { return nil }
        guard info.st_mode & S_IFMT == S_IFDIR else { return url.lastPathComponent }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
        var kept: String?
        for name in names {
            var entry = stat()
            let path = url.appendingPathComponent(name).path
            if known.contains(name), lstat(path, &entry) == 0, entry.st_mode & S_IFMT == S_IFREG, unlink(path) == 0 {
                continue
            }
            kept = kept ?? name
        }
        if rmdir(url.path) == 0 { return nil }
        return kept
            ?? ((try? FileManager.default.contentsOfDirectory(atPath: url.path))?.sorted().first
                ?? url.lastPathComponent)
    }

    /// Puts the complete export at `temporary` in place of `folder`: a plain rename when there is no
    /// folder, else an exchange (or, where the file system has none, aside-then-in).
    /// Returns notes (one line each) on what it could not delete.
    static func moveIntoPlace(_ temporary: URL, _ folder: URL, replacing: Bool, hooks: Hooks) throws -> [String] {
        let parent = folder.deletingLastPathComponent()
        defer { AtomicFile.syncFolder(parent) }
        guard replacing else {
            guard rename(temporary.path, folder.path) == 0 else {
                throw BatonError("--hf \(folder.path): cannot move the export into place (\(reason(errno)))")
            }
            return []
        }
        if !hooks.withoutExchange && baton_rename_exchange(temporary.path, folder.path) == 0 {
            AtomicFile.syncFolder(parent)
            hooks.pause("swapped")
            return removedOld(temporary, folder)  // the old export, now at the temporary name
        }
        if !hooks.withoutExchange && errno != EINVAL && errno != ENOSYS && errno != ENOTSUP {
            throw BatonError("--hf \(folder.path): cannot replace it (\(reason(errno)))")
        }
        let aside = asideName(folder, pid: getpid())
        guard rename(folder.path, aside.path) == 0 else {
            throw BatonError("--hf \(folder.path): cannot replace it (\(reason(errno)))")
        }
        AtomicFile.syncFolder(parent)
        hooks.pause("aside")
        guard rename(temporary.path, folder.path) == 0 else {
            let code = errno
            _ = rename(aside.path, folder.path)
            throw BatonError(
                "--hf \(folder.path): cannot move the export into place (\(reason(code))); the earlier export is back")
        }
        AtomicFile.syncFolder(parent)
        return removedOld(aside, folder)
    }

    /// Deletes the old export, swapped out to `url`; a note when something not an export's stays.
    static func removedOld(_ url: URL, _ folder: URL) -> [String] {
        guard let kept = removeExport(url) else { return [] }
        return [
            "export: kept \(url.path), the earlier export of \(folder.path): it holds \(kept), which baton export "
                + "did not write; move what you need out of it and delete it"
        ]
    }

    /// Cleans up after an export to `folder` that died: an old export moved aside while DIR is
    /// missing goes back (the replacement is rolled back); other leftovers of processes that are not
    /// a live baton are deleted, file by file, as far as an export wrote them (see removeExport).
    /// Returns what it did, one line each.
    static func recoverInterrupted(_ folder: URL) -> [String] {
        let fileManager = FileManager.default
        let parent = folder.deletingLastPathComponent()
        let prefix = ".\(folder.lastPathComponent)."
        var notes: [String] = []
        let names = ((try? fileManager.contentsOfDirectory(atPath: parent.path)) ?? []).filter { $0.hasPrefix(prefix) }
            .sorted()
        func deadProcess(_ name: String, _ kind: String) -> Bool {
            guard name.hasPrefix(prefix + kind + "-"), let pid = pid_t(name.dropFirst(prefix.count + kind.count + 1)),
                pid != getpid()
            else { return false }
            return !FilePaths.isLiveBaton(pid)
        }
        func onlyPlainFiles(_ url: URL) -> Bool {
            let entries = (try? fileManager.contentsOfDirectory(atPath: url.path)) ?? ["?"]
            return entries.allSatisfy { name in
                var info = stat()
                return lstat(url.appendingPathComponent(name).path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
            }
        }
        func remove(_ url: URL, left what: String) {
            if let kept = removeExport(url) {
                notes.append(
                    "export: kept \(url.path), left by \(what): it holds \(kept), which baton export did not write; "
                        + "move what you need out of it and delete it"
                )
            } else {
                notes.append("export: removed \(url.path), left by \(what)")
            }
        }
        for name in names where deadProcess(name, "old") {
            let aside = parent.appendingPathComponent(name)
            guard fileManager.fileExists(atPath: aside.appendingPathComponent(markerName).path), onlyPlainFiles(aside)
            else { continue }
            if !fileManager.fileExists(atPath: folder.path), rename(aside.path, folder.path) == 0 {
                AtomicFile.syncFolder(parent)
                notes.append("export: put back \(folder.path), moved aside by a replacement that did not finish")
            } else {
                remove(aside, left: "a replacement that did not finish")
            }
        }
        for name in names where deadProcess(name, "tmp") {
            let temporary = parent.appendingPathComponent(name)
            var info = stat()
            guard lstat(temporary.path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { continue }
            remove(temporary, left: "an export that did not finish")
        }
        return notes
    }
}
