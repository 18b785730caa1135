import CBatonSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where `baton prepare` writes a dataset: a temporary sibling of `--out` (`.OUT.tmp-PID`),
/// swapped in whole at the end, so that `--out` is at every instant the old dataset or the new
/// one, never a mix. A folder that holds a dataset baton prepare wrote is replaced only with
/// `--overwrite`; a folder that holds anything else (llm.c's own shards, any other file) is never
/// touched. What prepare wrote is known from the `.baton-dataset` list every prepare leaves in its
/// folder (or, for a folder from before it, from dataset.json's shard list).
///
/// The swap: a missing `--out` appears by one rename. An existing one is exchanged with the new
/// folder by renameat2(RENAME_EXCHANGE), atomic, after which the old dataset sits at the
/// temporary name and is deleted; a kill before the exchange leaves the old dataset, after it the
/// new one, and the temporary folder either way, which the next prepare into `--out` removes.
/// Where the file system cannot exchange, the old folder is renamed aside (`.OUT.old-PID`) and the
/// new one renamed in: a kill between the two renames leaves no `--out`, only `.OUT.old-PID`,
/// which the next prepare into `--out` puts back before anything else.
public final class DatasetFolder {
    public let target: URL
    /// The folder the dataset is written into; swapped into `target` by `commit()`.
    public let temporary: URL

    /// Debug builds (tests): called at named instants ("after-shard", "before-swap", "after-swap",
    /// "aside"), so a test can kill the process there. `forceNoExchange` takes the fallback path.
    nonisolated(unsafe) public static var faultHook: ((String) -> Void)?
    nonisolated(unsafe) public static var forceNoExchange = false

    /// Checks `out`, removes what a killed prepare left beside it, and creates the temporary folder.
    public init(out: URL, overwrite: Bool) throws {
        let out = out.standardizedFileURL.resolvingSymlinksInPath()
        target = out
        let parent = out.deletingLastPathComponent()
        temporary = parent.appendingPathComponent(".\(out.lastPathComponent).tmp-\(getpid())")
        var missing = parent
        while !FileManager.default.fileExists(atPath: missing.path) && missing.path != "/" {
            createdParents.append(missing)
            missing.deleteLastPathComponent()
        }
        do { try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true) } catch {
            throw BatonError("--out \(out.path): cannot create its parent folder (\(error.localizedDescription))")
        }
        try DatasetFolder.recover(out)
        try DatasetFolder.checkReplaceable(out, overwrite: overwrite)
        do { try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: false) } catch {
            throw BatonError("--out \(out.path): cannot create \(temporary.path) (\(error.localizedDescription))")
        }
    }

    /// The temporary folder's path for a file, and the path it will have once committed.
    public func url(_ name: String) -> URL { temporary.appendingPathComponent(name) }
    public func finalURL(_ url: URL) -> URL { target.appendingPathComponent(url.lastPathComponent) }

    /// The folders above `--out` this prepare created (deepest first), removed again on failure.
    private var createdParents: [URL] = []

    /// A prepare that fails removes its temporary folder, and the parent folders it created when
    /// they are still empty; `--out` is as it was.
    public func abandon() {
        try? FileManager.default.removeItem(at: temporary)
        for folder in createdParents
        where ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? ["?"]).isEmpty {
            try? FileManager.default.removeItem(at: folder)
        }
    }

    /// The list of what prepare wrote, left in the folder it wrote.
    public static let markerFile = ".baton-dataset"

    /// Makes the temporary folder `--out`: one rename if there is none, else an exchange.
    public func commit(overwrite: Bool) throws {
        let written = ((try? FileManager.default.contentsOfDirectory(atPath: temporary.path)) ?? []).sorted()
        let marker: [String: Any] = ["baton_version": batonVersion, "files": written]
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: marker, options: [.prettyPrinted, .sortedKeys]),
            to: temporary.appendingPathComponent(DatasetFolder.markerFile))
        AtomicFile.syncFolder(temporary)
        let parent = target.deletingLastPathComponent()
        // Checked again: something may have been put into --out while the dataset was written.
        try DatasetFolder.checkReplaceable(target, overwrite: overwrite)
        DatasetFolder.faultHook?("before-swap")
        if !FileManager.default.fileExists(atPath: target.path) {
            guard rename(temporary.path, target.path) == 0 else {
                throw BatonError(
                    "--out \(target.path): cannot move \(temporary.lastPathComponent) into place "
                        + "(\(String(cString: strerror(errno))))"
                )
            }
        } else if !DatasetFolder.forceNoExchange && baton_rename_exchange(temporary.path, target.path) == 0 {
            DatasetFolder.faultHook?("after-swap")
            try? FileManager.default.removeItem(at: temporary)  // the old dataset, now at the temporary name
        } else {
            let aside = DatasetFolder.asideURL(target, pid: getpid())
            guard rename(target.path, aside.path) == 0 else {
                throw BatonError(
                    "--out \(target.path): cannot move the old dataset aside (\(String(cString: strerror(errno))))")
            }
            DatasetFolder.faultHook?("aside")
            guard rename(temporary.path, target.path) == 0 else {
                let reason = String(cString: strerror(errno))
                _ = rename(aside.path, target.path)
                throw BatonError(
                    "--out \(target.path): cannot move the new dataset into place (\(reason)); the old one is back")
            }
            DatasetFolder.faultHook?("after-swap")
            try? FileManager.default.removeItem(at: aside)
        }
        AtomicFile.syncFolder(parent)
    }

    static func asideURL(_ out: URL, pid: Int32) -> URL {
        out.deletingLastPathComponent().appendingPathComponent(".\(out.lastPathComponent).old-\(pid)")
    }

    /// What a killed prepare left beside `out`: `.OUT.old-PID` (the old dataset, moved aside) is
    /// put back when `out` is missing, else deleted; `.OUT.tmp-PID` (a dataset never swapped in,
    /// or an old one swapped out) is deleted. Those of a baton still running are refused; a
    /// folder of that name holding anything prepare does not write is not ours and is left alone.
    static func recover(_ out: URL) throws {
        let parent = out.deletingLastPathComponent()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
        for kind in ["old", "tmp"] {
            let prefix = ".\(out.lastPathComponent).\(kind)-"
            for name in names.sorted() where name.hasPrefix(prefix) {
                guard let pid = Int32(name.dropFirst(prefix.count)), pid > 0 else { continue }
                let url = parent.appendingPathComponent(name)
                guard holdsOnlyDatasetFiles(url) else { continue }
                if pid != getpid() && FilePaths.isLiveBaton(pid) {
                    throw BatonError(
                        "--out \(out.path): \(parent.appendingPathComponent(name).path) belongs to a baton prepare "
                            + "still running (pid \(pid)); wait for it, or stop it and run again"
                    )
                }
                if kind == "old" && !FileManager.default.fileExists(atPath: out.path) {
                    guard rename(url.path, out.path) == 0 else {
                        throw BatonError(
                            "--out \(out.path): cannot put back the dataset a killed prepare moved aside to "
                                + "\(url.path) (\(String(cString: strerror(errno))))"
                        )
                    }
                } else {
                    try? FileManager.default.removeItem(at: url)
                }
            }
        }
    }

    /// `out` may be replaced when it is missing or empty, or (with --overwrite) holds only what
    /// `baton prepare` wrote there (its `.baton-dataset` list, or dataset.json's shards) and the
    /// temporary files of a killed write.
    static func checkReplaceable(_ out: URL, overwrite: Bool) throws {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: out.path, isDirectory: &isFolder) else { return }
        guard isFolder.boolValue else {
            throw BatonError("--out \(out.path): is a file, not a folder; choose another --out")
        }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted() } catch {
            throw BatonError("--out \(out.path): cannot read the folder (\(error.localizedDescription))")
        }
        guard !names.isEmpty else { return }
        let written = writtenByPrepare(out)
        for name in names where !(written.contains(name) && isDatasetEntry(name, in: out)) {
            throw BatonError(
                "--out \(out.path): holds \(name), which baton prepare did not write there; choose another --out "
                    + "(nothing there is deleted)"
            )
        }
        guard overwrite else {
            let shards = names.filter { $0.hasSuffix(".bin") }.count
            throw BatonError(
                "--out \(out.path): already holds a dataset (\(shards) shards); pass --overwrite to replace it whole")
        }
    }

    /// The names prepare recorded writing in `folder`: its `.baton-dataset` list, else (a folder
    /// from before that list) dataset.json's shards with dataset.json and tokenizer/; else none.
    private static func writtenByPrepare(_ folder: URL) -> Set<String> {
        if let data = FileManager.default.contents(atPath: folder.appendingPathComponent(markerFile).path),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let files = object["files"] as? [String]
        {
            return Set(files + [markerFile])
        }
        if let record = try? DatasetRecord.read(dataFolder: folder), let shards = record.shards {
            return Set(shards.map(\.name) + [CorpusPreparation.datasetFile, "tokenizer"])
        }
        return []
    }

    /// A leftover folder holds only names prepare writes (a killed write's temporary files too).
    private static func holdsOnlyDatasetFiles(_ folder: URL) -> Bool {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? ["?"]
        return names.allSatisfy {
            isDatasetEntry($0, in: folder) || isRegularFile(folder.appendingPathComponent($0)) && isTemporaryFile($0)
        }
    }

    private static func isRegularFile(_ url: URL) -> Bool {
        var info = stat()
        return lstat(url.path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
    }

    private static func isDatasetEntry(_ name: String, in folder: URL) -> Bool {
        if name == markerFile { return true }
        let url = folder.appendingPathComponent(name)
        var isFolder: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder)
        if name == "tokenizer" && isFolder.boolValue {
            let inside = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
            return inside.allSatisfy {
                (BPETokenizer.Kind.allFiles.contains($0) || isTemporaryFile($0))
                    && isRegularFile(url.appendingPathComponent($0))
            }
        }
        guard !isFolder.boolValue else { return false }
        return name.hasSuffix(".bin") || name == CorpusPreparation.datasetFile || isTemporaryFile(name)
    }

    /// `.NAME.bin.tmp-PID` and `.dataset.json.tmp-PID`: files a killed write never renamed.
    private static func isTemporaryFile(_ name: String) -> Bool {
        guard name.hasPrefix("."), let range = name.range(of: ".tmp-") else { return false }
        let stem = name[name.index(after: name.startIndex)..<range.lowerBound]
        return
            (stem.hasSuffix(".bin") || stem == CorpusPreparation.datasetFile
            || BPETokenizer.Kind.allFiles.contains(String(stem)))
            && Int(name[range.upperBound...]) != nil
    }
}
