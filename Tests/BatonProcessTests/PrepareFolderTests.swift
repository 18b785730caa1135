import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// `baton prepare --out DIR` writes the dataset whole into a sibling temporary folder and swaps it
/// in at the end: at every instant DIR is the old dataset or the new one, never a mix; a folder
/// that holds a dataset is replaced only with --overwrite, and one that holds anything else never.
final class PrepareFolderTests: FolderTestCase {
    var book: String {
        get throws {
            try String(
                contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt"), encoding: .utf8)
        }
    }

    func write(_ name: String, _ text: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url
    }

    /// Every file under `url` (relative path -> bytes); nil when there is no such folder.
    func snapshot(_ url: URL) -> [String: Data]? {
        guard let walker = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.isRegularFileKey])
        else { return nil }
        var files: [String: Data] = [:]
        let base = url.standardizedFileURL.resolvingSymlinksInPath().path
        for case let file as URL in walker
        where (try? file.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            let path = file.standardizedFileURL.resolvingSymlinksInPath().path
            files[String(path.dropFirst(base.count + 1))] = try? Data(contentsOf: file)
        }
        return FileManager.default.fileExists(atPath: url.path) ? files : nil
    }

    /// What is left beside `out` that a prepare wrote (temporary or set-aside folders).
    func leftovers(of out: URL) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: out.deletingLastPathComponent().path)) ?? []
        return names.filter { $0.hasPrefix(".\(out.lastPathComponent).") }
    }

    let gpt2 = ["--tokenizer", "gpt2", "--shard-tokens", "2048", "--val-tokens", "600", "--threads", "1"]

    func prepare(_ input: URL, _ out: URL, _ flags: [String], file: StaticString = #filePath, line: UInt = #line) throws
    {
        let result = try runBaton(["prepare", input.path, "--out", out.path] + flags)
        XCTAssertEqual(result.status, 0, result.stderr, file: file, line: line)
    }

    func testAFolderHoldingADatasetIsReplacedOnlyWithOverwriteAndWhole() throws {
        let text = try book
        let big = try write("big.txt", String(text.prefix(40_000))),
            small = try write("small.txt", String(text.dropFirst(50_000).prefix(12_000)))
        let out = folder.appendingPathComponent("data")
        try prepare(big, out, gpt2)
        let old = try XCTUnwrap(snapshot(out))
        XCTAssertGreaterThan(old.keys.filter { $0.hasSuffix(".bin") }.count, 4)
        // Without --overwrite: refused in one line, the folder untouched.
        let refused = try runBaton(["prepare", small.path, "--out", out.path] + gpt2)
        XCTAssertEqual(refused.status, 1)
        XCTAssert(refused.stderr.contains(out.path) && refused.stderr.contains("--overwrite"), refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertEqual(snapshot(out), old)
        let bytes = try runBaton(["prepare", small.path, "--out", out.path])
        XCTAssertEqual(bytes.status, 1, "a byte-level prepare into a GPT-2 folder is refused too")
        XCTAssertEqual(snapshot(out), old)
        // A failed prepare (a bad line far into the input) leaves the old dataset as it was.
        let escaped = String(text.prefix(2000)).replacingOccurrences(of: "\n", with: "\\n")
            .replacingOccurrences(of: "\"", with: "\\\"")
        let bad = try write(
            "bad.jsonl",
            String(repeating: "{\"text\": \"\(escaped)\"}\n", count: 20) + "not json\n")
        let failed = try runBaton(["prepare", bad.path, "--out", out.path, "--overwrite"] + gpt2)
        XCTAssertEqual(failed.status, 1)
        XCTAssert(failed.stderr.contains("line 21"), failed.stderr)
        XCTAssertEqual(snapshot(out), old, "a failed prepare changes nothing")
        XCTAssertEqual(leftovers(of: out), [])
        // A smaller input with --overwrite: exactly the new dataset, no old shard left beside it.
        let expected = folder.appendingPathComponent("expected")
        try prepare(small, expected, gpt2)
        try prepare(small, out, gpt2 + ["--overwrite"])
        XCTAssertEqual(snapshot(out), snapshot(expected))
        // Byte-level over a GPT-2 folder with --overwrite: byte-level shards only (no dataset.json, no tokenizer/).
        let bytesExpected = folder.appendingPathComponent("bytes-expected")
        try prepare(small, bytesExpected, [])
        try prepare(small, out, ["--overwrite"])
        XCTAssertEqual(snapshot(out), snapshot(bytesExpected))
        XCTAssertEqual(
            Set(snapshot(out)!.keys), [".baton-dataset", "corpus_train_000000.bin", "corpus_val_000000.bin"])
        XCTAssertEqual(leftovers(of: out), [])
    }

    func testAFolderHoldingOtherFilesIsNeverReplaced() throws {
        let input = try write("a.txt", String(try book.prefix(10_000)))
        for flags in [gpt2, []] {
            let out = folder.appendingPathComponent("notes-\(flags.count)")
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            try Data("mine\n".utf8).write(to: out.appendingPathComponent("notes.txt"))
            try Data("old".utf8).write(to: out.appendingPathComponent("x_train_000000.bin"))
            let before = snapshot(out)
            let result = try runBaton(["prepare", input.path, "--out", out.path, "--overwrite"] + flags)
            XCTAssertEqual(result.status, 1, result.stdout)
            XCTAssert(result.stderr.contains("notes.txt"), result.stderr)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
            XCTAssertEqual(snapshot(out), before)
        }
        // An empty folder is fine: it holds nothing to lose.
        let empty = folder.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try prepare(input, empty, gpt2)
        XCTAssert(FileManager.default.fileExists(atPath: empty.appendingPathComponent("dataset.json").path))
    }
}

extension PrepareFolderTests {
    /// SIGKILL `baton prepare --overwrite` over an existing dataset at several instants (timed,
    /// and inside the swap through the debug fault hook): after each kill the folder is exactly
    /// the old dataset or exactly the new one, and the next prepare removes what the killed one left.
    /// --overwrite replaces only what prepare recorded writing: llm.c's own shards, or any other
    /// .bin, in the folder are never deleted.
    func testOverwriteNeverDeletesShardsPrepareDidNotWrite() throws {
        let input = try write("in.txt", String(try book.prefix(20_000)))
        let out = folder.appendingPathComponent("llmc")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try writeRawShard(out.appendingPathComponent("fineweb_train_000001.bin"), count: 3, tokens: [1, 2, 3])
        try writeRawShard(out.appendingPathComponent("notes.bin"), count: 2, tokens: [4, 5])
        let old = try XCTUnwrap(snapshot(out))
        for flags in [[], gpt2] {
            let refused = try runBaton(["prepare", input.path, "--out", out.path, "--overwrite"] + flags)
            XCTAssertEqual(refused.status, 1, refused.stderr)
            XCTAssert(refused.stderr.contains("did not write") && refused.stderr.contains(out.path), refused.stderr)
            XCTAssertEqual(snapshot(out), old, "the shards baton did not write are untouched")
        }
        // A folder prepare wrote, with a shard added by hand: refused too, nothing lost.
        let mine = folder.appendingPathComponent("mine")
        try prepare(input, mine, [])
        XCTAssertNotNil(
            FileManager.default.contents(atPath: mine.appendingPathComponent(DatasetFolder.markerFile).path))
        try writeRawShard(mine.appendingPathComponent("extra_train_000009.bin"), count: 1, tokens: [7])
        let before = try XCTUnwrap(snapshot(mine))
        let again = try runBaton(["prepare", input.path, "--out", mine.path, "--overwrite"])
        XCTAssertEqual(again.status, 1, again.stderr)
        XCTAssert(again.stderr.contains("extra_train_000009.bin"), again.stderr)
        XCTAssertEqual(snapshot(mine), before)
    }

    /// A leftover-looking folder beside --out that holds other files, a temporary-looking file
    /// inside --out that no prepare recorded, and parent folders a failed prepare created: none is
    /// deleted, and the parents are not left behind.
    func testWhatLooksLikeALeftoverIsDeletedOnlyWhenItIsOneOfPreparesOwn() throws {
        let input = try write("in.txt", String(try book.prefix(20_000)))
        let out = folder.appendingPathComponent("x")
        try prepare(input, out, [])
        let neighbour = folder.appendingPathComponent(".x.tmp-99999")
        try FileManager.default.createDirectory(at: neighbour, withIntermediateDirectories: true)
        try Data("important".utf8).write(to: neighbour.appendingPathComponent("work.txt"))
        try Data("mine".utf8).write(to: out.appendingPathComponent(".mydata.bin.tmp-5"))
        let before = try XCTUnwrap(snapshot(out))
        let refused = try runBaton(["prepare", input.path, "--out", out.path, "--overwrite"])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssert(refused.stderr.contains(".mydata.bin.tmp-5"), refused.stderr)
        XCTAssertEqual(snapshot(out), before)
        XCTAssertEqual(
            try String(contentsOf: neighbour.appendingPathComponent("work.txt"), encoding: .utf8), "important")
        // A failed prepare into a new nested folder leaves no new parents behind.
        let bad = try write("bad.jsonl", "{\"text\": \"fine\"}\nnot json\n")
        let nested = folder.appendingPathComponent("newp/a/b")
        XCTAssertNotEqual(try runBaton(["prepare", bad.path, "--out", nested.path, "--tokenizer", "gpt2"]).status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("newp").path))
    }

    /// --name is a file-name prefix inside --out: a path would write outside the swapped folder.
    func testANameThatIsAPathIsAUsageError() throws {
        let input = try write("in.txt", String(try book.prefix(5_000)))
        for name in ["../other/corpus", "a/b", "..", ".", "", ".hidden", String(repeating: "a", count: 250)] {
            for flags in [[], gpt2] {
                let result = try runBaton(
                    ["prepare", input.path, "--out", folder.appendingPathComponent("d").path, "--name", name] + flags)
                XCTAssertEqual(result.status, 2, "--name '\(name)': \(result.stderr)")
                XCTAssert(result.stderr.contains("--name"), result.stderr)
            }
        }
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted(), ["in.txt"], "nothing written")
    }

    func testAKilledOverwriteLeavesTheOldDatasetOrTheNewOneNeverAMix() throws {
        let text = try book
        let oldInput = try write("old.txt", String(text.prefix(30_000)))
        let newInput = try write("new.txt", String(repeating: text, count: 2))
        let flags = ["--tokenizer", "gpt2", "--shard-tokens", "8192", "--val-tokens", "3000", "--threads", "1"]
        let expected = folder.appendingPathComponent("expected-old"),
            expectedNew = folder.appendingPathComponent("expected-new")
        try prepare(oldInput, expected, flags)
        try prepare(newInput, expectedNew, flags)
        let old = try XCTUnwrap(snapshot(expected)), new = try XCTUnwrap(snapshot(expectedNew))
        XCTAssertNotEqual(old, new)
        var outcomes: [String] = []
        let instants: [(String, String?)] = [
            ("timed 0.05 s", nil), ("timed 0.3 s", nil), ("timed 0.8 s", nil),
            ("after a shard", "pause-after-shard"), ("before the swap", "pause-before-swap"),
            ("after the swap", "pause-after-swap"),
        ]
        for (index, (instant, fault)) in instants.enumerated() {
            let out = folder.appendingPathComponent("data\(index)")
            try prepare(oldInput, out, flags)
            XCTAssertEqual(snapshot(out), old)
            let marker = folder.appendingPathComponent("marker\(index)")
            let process = Process()
            process.executableURL = TestPaths.batonExecutable
            process.arguments =
                ["prepare", newInput.path, "--out", out.path, "--overwrite"] + flags
                + (fault.map { ["--inject-fault", "\($0):\(marker.path)"] } ?? [])
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            if fault != nil {
                for _ in 0..<3000 where process.isRunning && !FileManager.default.fileExists(atPath: marker.path) {
                    usleep(10_000)
                }
                XCTAssert(
                    FileManager.default.fileExists(atPath: marker.path), "\(instant): the fault hook was not reached")
            } else {
                usleep(useconds_t(Double(instant.split(separator: " ")[1])! * 1e6))
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let after = snapshot(out)
            XCTAssert(
                after == old || after == new,
                "\(instant): the folder is neither the old dataset nor the new one: "
                    + "\(after.map { $0.keys.sorted() } ?? ["(missing)"])"
            )
            outcomes.append("\(instant): \(after == old ? "old" : after == new ? "new" : "MIX")")
            // The next prepare into the same --out removes what the killed one left beside it.
            try prepare(newInput, out, flags + ["--overwrite"])
            XCTAssertEqual(snapshot(out), new, instant)
            XCTAssertEqual(leftovers(of: out), [], instant)
        }
        XCTAssert(
            outcomes.contains("before the swap: old") && outcomes.contains("after the swap: new"),
            outcomes.joined(separator: ", "))
    }
}

extension PrepareFolderTests {
    /// Where the file system cannot exchange two folders, the old one is renamed aside and the new
    /// one renamed in. A kill between the two leaves no --out, only `.OUT.old-PID` holding the old
    /// dataset whole; the next prepare into --out puts it back first (here one without
    /// --overwrite, which then refuses and leaves it so). A whole run on that path gives the new one.
    func testTheRenameAsideSwapIsRecoveredByTheNextPrepare() throws {
        let text = try book
        let oldInput = try write("old.txt", String(text.prefix(20_000))),
            newInput = try write("new.txt", String(text.dropFirst(30_000).prefix(30_000)))
        let flags = ["--tokenizer", "gpt2", "--shard-tokens", "2048", "--val-tokens", "600", "--threads", "1"]
        let out = folder.appendingPathComponent("data"), expectedNew = folder.appendingPathComponent("expected-new")
        try prepare(oldInput, out, flags)
        try prepare(newInput, expectedNew, flags)
        let old = try XCTUnwrap(snapshot(out)), new = try XCTUnwrap(snapshot(expectedNew))
        let marker = folder.appendingPathComponent("marker")
        let process = Process()
        process.executableURL = TestPaths.batonExecutable
        process.arguments =
            [
                "prepare", newInput.path, "--out", out.path, "--overwrite", "--inject-fault",
                "pause-aside:\(marker.path)",
            ] + flags
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<3000 where process.isRunning && !FileManager.default.fileExists(atPath: marker.path) {
            usleep(10_000)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertNil(snapshot(out), "between the two renames there is no --out")
        XCTAssertEqual(snapshot(folder.appendingPathComponent(".data.old-\(process.processIdentifier)")), old)
        let refused = try runBaton(["prepare", newInput.path, "--out", out.path] + flags)
        XCTAssertEqual(refused.status, 1)
        XCTAssert(refused.stderr.contains("--overwrite"), refused.stderr)
        XCTAssertEqual(snapshot(out), old, "put back by the next prepare")
        XCTAssertEqual(leftovers(of: out), [])
        try prepare(newInput, out, flags + ["--overwrite", "--inject-fault", "no-exchange:-"])
        XCTAssertEqual(snapshot(out), new)
        XCTAssertEqual(leftovers(of: out), [])
    }
}
