import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// `baton export --hf DIR`: the files transformers needs, with GPT-2's config fields, the
/// checkpoint's tensors as they are, the tokenizer for BPE runs, none for byte-level ones; an
/// existing folder refused without --overwrite. (scripts/checks/check_hf_export.py loads the folder with
/// transformers itself; see the README for its output.)
final class HuggingFaceExportTests: FolderTestCase {
    func assertNoTemporaryFolderLeft(file: StaticString = #filePath, line: UInt = #line) throws {
        let hidden = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(hidden, [], "no temporary folder is left", file: file, line: line)
    }

    func json(_ url: URL) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    func testAGPT2RunExportsAHuggingFaceFolder() throws {
        let text = try bundledText(prefix: 20_000)
        let input = folder.appendingPathComponent("t.txt")
        try Data(text.utf8).write(to: input)
        let shards = folder.appendingPathComponent("shards").path, run = folder.appendingPathComponent("run").path
        XCTAssertEqual(
            try runBaton([
                "prepare", input.path, "--tokenizer", "gpt2", "--out", shards, "--shard-tokens", "2048", "--val-tokens",
                "600",
            ]).status, 0)
        let trained = try runBaton([
            "train", "--data", shards, "--out", run, "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "16",
            "--batch", "2", "--steps", "2", "--eval-batches", "1", "--device", "cpu",
        ])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let hf = folder.appendingPathComponent("hf")
        let exported = try runBaton(["export", run, "--hf", hf.path])
        XCTAssertEqual(exported.status, 0, exported.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: hf.path).sorted()
        XCTAssertEqual(
            names,
            [
                ".baton-export", "config.json", "generation_config.json", "merges.txt", "model.safetensors",
                "special_tokens_map.json",
                "tokenizer_config.json", "vocab.json",
            ])
        let config = try json(hf.appendingPathComponent("config.json"))
        XCTAssertEqual(config["model_type"] as? String, "gpt2")
        XCTAssertEqual(config["architectures"] as? [String], ["GPT2LMHeadModel"])
        XCTAssertEqual(config["activation_function"] as? String, "gelu_new")
        XCTAssertEqual(config["layer_norm_epsilon"] as? Double, 1e-5)
        XCTAssertEqual(config["tie_word_embeddings"] as? Bool, true)
        for (key, value) in [
            ("n_layer", 1), ("n_head", 2), ("n_embd", 16), ("n_positions", 16), ("vocab_size", 50257),
            ("eos_token_id", 50256),
        ] {
            XCTAssertEqual(config[key] as? Int, value, key)
        }
        XCTAssertEqual(
            try json(hf.appendingPathComponent("tokenizer_config.json"))["tokenizer_class"] as? String, "GPT2Tokenizer")
        let checkpoint = CheckpointStore(runFolder: URL(fileURLWithPath: run)).url(step: 2)
        XCTAssertEqual(
            try Data(contentsOf: hf.appendingPathComponent("model.safetensors")),
            try Data(contentsOf: checkpoint.appendingPathComponent("model.safetensors")))
        XCTAssertEqual(
            try SafeTensors.read(hf.appendingPathComponent("model.safetensors")).entries["transformer.wte.weight"]?
                .shape, [50257, 16],
            "exactly the real vocabulary rows")
        XCTAssertNoThrow(try BPETokenizer(folder: hf))
        // An existing folder: refused in one line, then replaced with --overwrite.
        let again = try runBaton(["export", run, "--hf", hf.path])
        XCTAssertEqual(again.status, 1)
        XCTAssert(again.stderr.contains("already exists; pass --overwrite"), again.stderr)
        XCTAssertEqual(try runBaton(["export", checkpoint.path, "--hf", hf.path, "--overwrite"]).status, 0)
        let left = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(left, [], "no temporary folder is left")
    }

    func testAByteLevelRunExportsWithoutATokenizer() throws {
        let data = try makeTinyShards(in: folder), run = folder.appendingPathComponent("run").path
        XCTAssertEqual(
            try runBaton([
                "train", "--data", data, "--out", run, "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len",
                "8",
                "--batch", "4", "--steps", "2", "--device", "cpu",
            ]).status, 0)
        let hf = folder.appendingPathComponent("hf")
        let exported = try runBaton(["export", run, "--hf", hf.path])
        XCTAssertEqual(exported.status, 0, exported.stderr)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: hf.path).sorted(),
            [".baton-export", "config.json", "generation_config.json", "model.safetensors"])
        XCTAssertEqual(try json(hf.appendingPathComponent("config.json"))["vocab_size"] as? Int, 256)
    }
}

/// What `--hf DIR` may replace: only an earlier export, never a run or an input, and never half.
extension HuggingFaceExportTests {
    /// A tiny byte-level run with checkpoints at steps 2 and 4.
    func tinyRun() throws -> URL {
        let data = try makeTinyShards(in: folder), run = folder.appendingPathComponent("runs/run")
        let trained = try runBaton([
            "train", "--data", data, "--out", run.path, "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len",
            "8",
            "--batch", "4", "--steps", "4", "--save-every", "2", "--keep-last", "5", "--eval-batches", "1", "--device",
            "cpu",
        ])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        return run
    }

    /// Every file under `url` (relative path -> bytes); empty when it does not exist.
    func snapshot(_ url: URL) throws -> [String: Data] {
        var files: [String: Data] = [:]
        guard let walker = FileManager.default.enumerator(atPath: url.path) else { return files }
        while let name = walker.nextObject() as? String {
            var isFolder: ObjCBool = false
            let path = url.appendingPathComponent(name).path
            if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue {
                files[name] = try Data(contentsOf: URL(fileURLWithPath: path))
            }
        }
        return files
    }

    func assertOneLineError(
        _ arguments: [String], mentions words: [String], file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let result = try runBaton(arguments)
        XCTAssertNotEqual(result.status, 0, "\(arguments) should fail", file: file, line: line)
        XCTAssertEqual(
            result.stderr.split(separator: "\n").count, 1, "one line expected, got: \(result.stderr)", file: file,
            line: line)
        for word in words {
            XCTAssert(result.stderr.contains(word), "'\(word)' missing from: \(result.stderr)", file: file, line: line)
        }
        for dump in ["NSCocoaErrorDomain", "Error Domain=", "Fatal error"] {
            XCTAssertFalse(result.stderr.contains(dump), result.stderr, file: file, line: line)
        }
    }

    /// The run itself, its checkpoint, the folder holding it, a folder above that, or a folder
    /// inside the run: refused with or without --overwrite, and the run is untouched.
    func testAnExportNeverReplacesOrEntersTheRunItReads() throws {
        let run = try tinyRun()
        let before = try snapshot(folder)
        let checkpoint = CheckpointStore(runFolder: run).url(step: 4)
        let weights = checkpoint.appendingPathComponent("model.safetensors")
        let link = folder.appendingPathComponent("link-to-runs")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: run.deletingLastPathComponent())
        let targets = [
            run.path, run.deletingLastPathComponent().path, folder.path, checkpoint.path,
            run.appendingPathComponent("hf").path,
            checkpoint.appendingPathComponent("hf").path, link.path, link.path + "/run", run.path + "/../run",
        ]
        for source in [run.path, checkpoint.path, weights.path] {
            for target in targets {
                for overwrite in [[], ["--overwrite"]] {
                    try assertOneLineError(["export", source, "--hf", target] + overwrite, mentions: ["--hf"])
                }
            }
        }
        // Refused by the overlap check itself, not only by a later one that happens to stop it too.
        for target in [run.deletingLastPathComponent().path, folder.path] {
            try assertOneLineError(
                ["export", run.path, "--hf", target, "--overwrite"], mentions: ["holds the", "that the export reads"])
        }
        var after = try snapshot(folder)
        after.removeValue(forKey: "link-to-runs")
        XCTAssertEqual(after.keys.sorted(), before.keys.sorted(), "no file appeared or went away")
        XCTAssert(after == before, "no file changed")
        XCTAssertNoThrow(try CheckpointStore.verify(checkpoint))
    }

    /// --overwrite replaces only a folder an export wrote, holding only what the export wrote.
    func testOverwriteReplacesOnlyAnEarlierExport() throws {
        let run = try tinyRun()
        let mine = folder.appendingPathComponent("mine")
        try FileManager.default.createDirectory(at: mine, withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: mine.appendingPathComponent("notes.txt"))
        try assertOneLineError(
            ["export", run.path, "--hf", mine.path, "--overwrite"], mentions: ["--hf", mine.path, "not a Baton export"])
        XCTAssertEqual(try String(contentsOf: mine.appendingPathComponent("notes.txt"), encoding: .utf8), "keep me")
        let file = folder.appendingPathComponent("file.txt")
        try Data("a file".utf8).write(to: file)
        try assertOneLineError(["export", run.path, "--hf", file.path, "--overwrite"], mentions: ["--hf", file.path])
        XCTAssertEqual(try String(contentsOf: file, encoding: .utf8), "a file")

        let hf = folder.appendingPathComponent("hf")
        XCTAssertEqual(try runBaton(["export", run.path, "--hf", hf.path]).status, 0)
        let marker = try json(hf.appendingPathComponent(".baton-export"))
        XCTAssertNotNil(marker["baton_version"] as? String)
        XCTAssertEqual(marker["files"] as? [String], ["config.json", "generation_config.json", "model.safetensors"])
        XCTAssert((marker["source"] as? String)?.hasSuffix("model.safetensors") == true, "\(marker)")
        // A file someone added to an export is theirs: the export is no longer replaced.
        try Data("added".utf8).write(to: hf.appendingPathComponent("README.md"))
        try assertOneLineError(["export", run.path, "--hf", hf.path, "--overwrite"], mentions: ["--hf", "README.md"])
        XCTAssertEqual(try String(contentsOf: hf.appendingPathComponent("README.md"), encoding: .utf8), "added")
        try FileManager.default.removeItem(at: hf.appendingPathComponent("README.md"))
        let replaced = try runBaton([
            "export", CheckpointStore(runFolder: run).url(step: 2).path, "--hf", hf.path, "--overwrite",
        ])
        XCTAssertEqual(replaced.status, 0, replaced.stderr)
        XCTAssertEqual(
            try Data(contentsOf: hf.appendingPathComponent("model.safetensors")),
            try Data(
                contentsOf: CheckpointStore(runFolder: run).url(step: 2).appendingPathComponent("model.safetensors")))
        try assertNoTemporaryFolderLeft()
    }

    /// A place that cannot be written (under a regular file: fails for root too) is one line
    /// naming --hf and the reason.
    func testAnUnwritablePlaceIsOneLine() throws {
        let run = try tinyRun()
        let file = folder.appendingPathComponent("plain-file")
        try Data("x".utf8).write(to: file)
        try assertOneLineError(
            ["export", run.path, "--hf", file.path + "/sub/hf"],
            mentions: ["--hf", file.path + "/sub/hf", "not a directory"])
    }

    /// `export --overwrite` killed with SIGKILL at random instants, and at fixed points inside the
    /// swap (the debug build's --inject-fault pause-at:POINT:FILE): after each kill DIR is, file
    /// for file and byte for byte, the whole old export or the whole new one, never a mix and never
    /// missing; the next export cleans up what the killed one left.
    func testOverwriteKilledAtAnyInstantLeavesTheOldOrTheNewExport() throws {
        let run = try tinyRun()
        let store = CheckpointStore(runFolder: run)
        let sources = [store.url(step: 2).path, store.url(step: 4).path]
        var exports: [[String: Data]] = []
        for (index, source) in sources.enumerated() {
            let reference = folder.appendingPathComponent("reference-\(index)")
            XCTAssertEqual(try runBaton(["export", source, "--hf", reference.path]).status, 0)
            exports.append(try snapshot(reference))
        }
        XCTAssertNotEqual(exports[0], exports[1])
        let hf = folder.appendingPathComponent("hf")
        XCTAssertEqual(try runBaton(["export", sources[0], "--hf", hf.path]).status, 0)
        var current = 0
        func check(_ what: String) throws {
            let now = try snapshot(hf)
            guard let which = exports.firstIndex(of: now) else {
                XCTFail(
                    "\(what): \(hf.path) is neither export: \(now.keys.sorted()) (old "
                        + "\(exports[current].keys.sorted()))"
                )
                return
            }
            current = which
        }
        func launch(_ extra: [String]) throws -> Process {
            let process = Process()
            process.executableURL = TestPaths.batonExecutable
            process.arguments = ["export", sources[1 - current], "--hf", hf.path, "--overwrite"] + extra
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            return process
        }
        let started = Date()
        XCTAssertEqual(try runBaton(["export", sources[1], "--hf", hf.path, "--overwrite"]).status, 0)
        let whole = Date().timeIntervalSince(started)
        try check("after a whole export")
        var generator = RandomGenerator(seed: 18)
        for kill in 1...12 {
            let process = try launch([])
            usleep(UInt32(generator.nextUniform() * whole * 1.2 * 1e6))
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            try check("after random kill \(kill)")
        }
        // Inside the swap, deterministically: before it, after it (the old one not yet deleted),
        // and, on the path for file systems without RENAME_EXCHANGE, between its two renames.
        for point in ["written", "swapped", "aside"] {
            let marker = folder.appendingPathComponent("paused-\(point)")
            let process = try launch(["--inject-fault", "pause-at:\(point):\(marker.path)"])
            let deadline = Date().addingTimeInterval(30)
            while !FileManager.default.fileExists(atPath: marker.path) && process.isRunning && Date() < deadline {
                usleep(10_000)
            }
            XCTAssert(FileManager.default.fileExists(atPath: marker.path), "the export never reached \(point)")
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            if point != "aside" { try check("after a kill at \(point)") }
            // The next export recovers an interrupted swap first (here one refused: DIR exists).
            let next = try runBaton(["export", sources[current], "--hf", hf.path])
            XCTAssertEqual(next.status, 1, next.stderr)
            try check("after the export following a kill at \(point)")
        }
        XCTAssertEqual(try runBaton(["export", sources[1 - current], "--hf", hf.path, "--overwrite"]).status, 0)
        try check("after a last whole export")
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix(".") }, [],
            "what the killed exports left is cleaned up")
    }

    /// A file put into the earlier export while the new one is written (the debug build's
    /// --inject-fault wait-at:written:FILE holds the export there until FILE is deleted): the
    /// re-check right before the swap refuses, naming the file; nothing is deleted or replaced.
    func testAFileAddedDuringTheWriteIsNotSwappedAway() throws {
        let run = try tinyRun()
        let store = CheckpointStore(runFolder: run)
        let hf = folder.appendingPathComponent("hf")
        XCTAssertEqual(try runBaton(["export", store.url(step: 2).path, "--hf", hf.path]).status, 0)
        let before = try snapshot(hf)
        let marker = folder.appendingPathComponent("waiting")
        let process = Process()
        process.executableURL = TestPaths.batonExecutable
        process.arguments = [
            "export", store.url(step: 4).path, "--hf", hf.path, "--overwrite", "--inject-fault",
            "wait-at:written:\(marker.path)",
        ]
        let errors = folder.appendingPathComponent("stderr.txt")
        XCTAssert(FileManager.default.createFile(atPath: errors.path, contents: nil))
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: marker.path) && process.isRunning && Date() < deadline {
            usleep(10_000)
        }
        XCTAssert(FileManager.default.fileExists(atPath: marker.path), "the export never reached written")
        try Data("mine".utf8).write(to: hf.appendingPathComponent("README.md"))
        try FileManager.default.removeItem(at: marker)
        process.waitUntilExit()
        let stderr = try String(contentsOf: errors, encoding: .utf8)
        try FileManager.default.removeItem(at: errors)
        XCTAssertEqual(process.terminationStatus, 1, stderr)
        XCTAssertEqual(stderr.split(separator: "\n").count, 1, stderr)
        XCTAssert(stderr.contains("--hf") && stderr.contains("README.md"), stderr)
        var after = try snapshot(hf)
        XCTAssertEqual(after.removeValue(forKey: "README.md"), Data("mine".utf8), "the added file stays")
        XCTAssert(after == before, "the earlier export is as it was")
        try assertNoTemporaryFolderLeft()
    }

    /// A leftover `.DIR.tmp-PID` whose PID is alive but not baton (the PID reused: here a `sleep`)
    /// is cleaned up; one whose PID is a live baton export is left alone until that export is gone.
    func testALeftoverIsJudgedByWhetherItsPIDIsALiveBaton() throws {
        let run = try tinyRun()
        let hf = folder.appendingPathComponent("hf")
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["60"]
        try sleeper.run()
        defer { sleeper.terminate(); sleeper.waitUntilExit() }
        let leftover = folder.appendingPathComponent(".hf.tmp-\(sleeper.processIdentifier)")
        try FileManager.default.createDirectory(at: leftover, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: leftover.appendingPathComponent("config.json"))
        let exported = try runBaton(["export", run.path, "--hf", hf.path])
        XCTAssertEqual(exported.status, 0, exported.stderr)
        XCTAssert(exported.stdout.contains("removed \(leftover.path)"), exported.stdout)
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: leftover.path), "a leftover of a PID that is not baton is cleaned up"
        )

        // A live baton export's temporary folder is its own: left alone.
        let marker = folder.appendingPathComponent("paused")
        let paused = Process()
        paused.executableURL = TestPaths.batonExecutable
        paused.arguments = [
            "export", run.path, "--hf", hf.path, "--overwrite", "--inject-fault", "pause-at:written:\(marker.path)",
        ]
        paused.standardOutput = FileHandle.nullDevice
        paused.standardError = FileHandle.nullDevice
        try paused.run()
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: marker.path) && paused.isRunning && Date() < deadline {
            usleep(10_000)
        }
        let live = folder.appendingPathComponent(".hf.tmp-\(paused.processIdentifier)")
        XCTAssert(FileManager.default.fileExists(atPath: live.path))
        XCTAssertEqual(try runBaton(["export", run.path, "--hf", hf.path, "--overwrite"]).status, 0)
        XCTAssert(FileManager.default.fileExists(atPath: live.path), "a live baton's temporary folder is left alone")
        Glibc.kill(paused.processIdentifier, SIGKILL)
        paused.waitUntilExit()
        XCTAssertEqual(try runBaton(["export", run.path, "--hf", hf.path, "--overwrite"]).status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: live.path), "once it is gone, its leftover is cleaned up")
    }
}
