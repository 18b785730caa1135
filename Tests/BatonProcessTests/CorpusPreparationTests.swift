import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// `baton prepare --tokenizer gpt2`: documents in order, each after <|endoftext|>, validation
/// first, shards of the asked size, the same tokens however the files are cut into blocks, the
/// same bytes on a rerun, bad input refused in one line with nothing left behind.
final class CorpusPreparationTests: XCTestCase {
    var folder: URL!
    let tokenizerFolder = TestPaths.repositoryRoot.appendingPathComponent("data/gpt2-tokenizer")
    var tokenizer: BPETokenizer { gpt2Tokenizer }

    override func setUpWithError() throws { folder = try TestPaths.temporaryFolder("corpus") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func write(_ name: String, _ text: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url
    }

    func allTokens(_ out: URL) throws -> [Int32] {
        let names = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".bin") }
        // val_000000 first, then train_000001, ... : the order they were filled in.
        let ordered = names.sorted { $0.suffix(10) < $1.suffix(10) }
        return try ordered.flatMap { name -> [Int32] in
            let shard = try TokenShard(url: out.appendingPathComponent(name), vocabularySize: 50257)
            return try shard.tokens(start: 0, count: shard.tokenCount)
        }
    }

    func testDocumentsAreShardedInOrderAfterEndOfText() throws {
        let book = String(
            try String(
                contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt"), encoding: .utf8
            ).prefix(60_000))
        let txt = try write("book.txt", book)
        let jsonl = try write(
            "docs.jsonl", "{\"text\": \"Hello world\", \"id\": 1}\n\n{\"text\": \"It's 2026 — 中文 😀\"}\n")
        var options = CorpusPreparation.Options()
        options.shardTokens = 4096
        options.valTokens = 1000
        options.blockBytes = 3000  // many blocks: the cuts must not change the tokens
        let out = folder.appendingPathComponent("out")
        let result = try CorpusPreparation(tokenizerFolder: tokenizerFolder, options: options).prepare(
            files: [txt, jsonl], outputFolder: out)
        let eot = GPT2Tokenizer.endOfText
        let expected =
            [eot] + tokenizer.encode(book) + [eot] + tokenizer.encode("Hello world") + [eot]
            + tokenizer.encode("It's 2026 — 中文 😀")
        XCTAssertEqual(try allTokens(out), expected)
        XCTAssertEqual(result.documents, 3)
        XCTAssertEqual(result.valTokens, 1000)
        XCTAssertEqual(result.trainTokens, expected.count - 1000)
        XCTAssertEqual(result.files.first?.lastPathComponent, "corpus_val_000000.bin")
        XCTAssertEqual(result.files[1].lastPathComponent, "corpus_train_000001.bin")
        for file in result.files.dropFirst().dropLast() {
            XCTAssertEqual(try TokenShard(url: file, vocabularySize: 50257).tokenCount, 4096)
        }
        let record =
            try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("dataset.json")))
            as? [String: Any]
        XCTAssertEqual(record?["tokenizer"] as? String, "gpt2")
        XCTAssertEqual(record?["vocab_size"] as? Int, 50257)
        XCTAssertNoThrow(try BPETokenizer(folder: out.appendingPathComponent("tokenizer")))
        // A rerun writes the same bytes.
        let again = folder.appendingPathComponent("again")
        _ = try CorpusPreparation(tokenizerFolder: tokenizerFolder, options: options).prepare(
            files: [txt, jsonl], outputFolder: again)
        for file in result.files {
            XCTAssertEqual(
                try Data(contentsOf: file), try Data(contentsOf: again.appendingPathComponent(file.lastPathComponent)))
        }
    }

    func testGPT2ShardsTrainWithTheFullVocabulary() throws {
        let book = try bundledText(prefix: 20_000)
        let out = folder.appendingPathComponent("shards")
        let prepared = try runBaton([
            "prepare", try write("b.txt", book).path, "--tokenizer", "gpt2", "--out", out.path, "--shard-tokens",
            "2048", "--val-tokens", "600",
        ])
        XCTAssertEqual(prepared.status, 0, prepared.stderr)
        // No --vocab-size: the folder's dataset.json says 50257.
        let run = folder.appendingPathComponent("run").path
        let trained = try runBaton([
            "train", "--data", out.path, "--out", run,
            "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "16", "--batch", "2", "--steps", "3",
            "--eval-batches", "1", "--device", "cpu",
        ])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        XCTAssert(
            trained.stdout.contains("data: gpt2 tokens (dataset.json): vocabulary 50257")
                && trained.stdout.contains("vocabulary 50257"), trained.stdout)
        // Sampling encodes the prompt and decodes with the data's tokenizer, and can stop at <|endoftext|>.
        let sampled = try runBaton([
            "sample", run, "--prompt", "Of Man's", "--length", "12", "--device", "cpu", "--stop-at-eot",
        ])
        XCTAssertEqual(sampled.status, 0, sampled.stderr)
        XCTAssert(sampled.stdout.hasPrefix("Of Man's"), sampled.stdout)
        // Shards as llm.c writes them (no dataset.json) train as they are with --vocab-size 50257.
        try FileManager.default.removeItem(at: out.appendingPathComponent("dataset.json"))
        let llmc = try runBaton([
            "train", "--data", out.path, "--out", folder.appendingPathComponent("llmc").path, "--vocab-size", "50257",
            "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "16", "--batch", "2", "--steps", "1",
            "--device", "cpu",
        ])
        XCTAssertEqual(llmc.status, 0, llmc.stderr)
        // A vocabulary too small for them is refused in one line.
        let small = try runBaton([
            "train", "--data", out.path, "--out", folder.appendingPathComponent("run256").path, "--vocab-size", "256",
            "--steps", "1", "--device", "cpu",
        ])
        XCTAssertEqual(small.status, 1)
        XCTAssert(small.stderr.contains("is not below the vocabulary size 256"), small.stderr)
    }

    func assertRefused(
        _ files: [URL], mentions words: [String], file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let out = folder.appendingPathComponent("refused")
        var options = CorpusPreparation.Options()
        options.shardTokens = 1024
        options.valTokens = 10
        options.blockBytes = 64
        XCTAssertThrowsError(
            try CorpusPreparation(tokenizerFolder: tokenizerFolder, options: options).prepare(
                files: files, outputFolder: out),
            file: file, line: line
        ) { error in
            let message = "\(error)"
            XCTAssertFalse(message.contains("\n"), message, file: file, line: line)
            for word in words {
                XCTAssert(message.contains(word), "'\(word)' missing from: \(message)", file: file, line: line)
            }
        }
        let left =
            (try? FileManager.default.contentsOfDirectory(atPath: out.path))?.filter {
                $0.hasSuffix(".bin") || $0 == "dataset.json"
            } ?? []
        XCTAssertEqual(left, [], "nothing half-done is left", file: file, line: line)
    }

    func testBadInputIsOneLineAndLeavesNothing() throws {
        let good = try write("good.txt", String(repeating: "Some text to make a shard or two.\n", count: 200))
        try assertRefused(
            [good, try write("a.jsonl", "{\"text\": \"fine\"}\nnot json\n")],
            mentions: ["a.jsonl", "line 2", "not a JSON object"])
        try assertRefused(
            [good, try write("b.jsonl", "{\"text\": \"fine\"}\n{\"body\": \"x\"}\n")],
            mentions: ["b.jsonl", "line 2", "\"text\"", "--field"])
        var bad = Data(String(repeating: "valid text\n", count: 10).utf8)
        bad.append(contentsOf: [0x66, 0xC3, 0x28, 0x0A])
        let invalid = folder.appendingPathComponent("bad.txt")
        try bad.write(to: invalid)
        try assertRefused([good, invalid], mentions: ["bad.txt", "not valid UTF-8 at byte offset 111"])
        try assertRefused([folder.appendingPathComponent("missing.txt")], mentions: ["missing.txt", "no such file"])
    }
}

extension CorpusPreparationTests {
    /// SIGKILL in the middle of `baton prepare`: the shards are written into `.OUT.tmp-PID` beside
    /// --out, each whole; --out does not appear; a rerun removes the leftover and writes the bytes
    /// an uninterrupted run writes.
    func testAKilledPrepareLeavesOnlyWholeShardsAndARerunIsTheSame() throws {
        let text = try String(
            contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt"), encoding: .utf8)
        let input = try write("big.txt", String(repeating: text, count: 4))
        let flags = ["--tokenizer", "gpt2", "--shard-tokens", "20000", "--val-tokens", "5000", "--threads", "1"]
        let straight = folder.appendingPathComponent("straight"), killed = folder.appendingPathComponent("killed")
        XCTAssertEqual(try runBaton(["prepare", input.path, "--out", straight.path] + flags).status, 0)
        let process = Process()
        process.executableURL = TestPaths.batonExecutable
        process.arguments = ["prepare", input.path, "--out", killed.path] + flags
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let temporary = folder.appendingPathComponent(".killed.tmp-\(process.processIdentifier)")
        var shardsSeen = 0
        for _ in 0..<400 where shardsSeen < 3 {  // wait for a few shards, then kill mid-run
            usleep(10_000)
            shardsSeen =
                ((try? FileManager.default.contentsOfDirectory(atPath: temporary.path)) ?? []).filter {
                    $0.hasSuffix(".bin")
                }.count
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal, "the run must still be going when it is killed")
        XCTAssertFalse(FileManager.default.fileExists(atPath: killed.path), "--out appears only whole")
        let visible = try FileManager.default.contentsOfDirectory(atPath: temporary.path).filter {
            $0.hasSuffix(".bin")
        }
        XCTAssertFalse(visible.isEmpty)
        for name in visible {
            let url = temporary.appendingPathComponent(name)
            XCTAssertNoThrow(try TokenShard(url: url, vocabularySize: 50257), "\(name) must be whole")
            XCTAssertEqual(try Data(contentsOf: url), try Data(contentsOf: straight.appendingPathComponent(name)))
        }
        XCTAssertEqual(try runBaton(["prepare", input.path, "--out", killed.path] + flags).status, 0)
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: temporary.path), "the rerun removes what the killed run left")
        let names = try FileManager.default.contentsOfDirectory(atPath: straight.path).sorted()
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: killed.path).sorted(), names,
            "no temporary file is left")
        for name in names where name.hasSuffix(".bin") || name == "dataset.json" {
            XCTAssertEqual(
                try Data(contentsOf: killed.appendingPathComponent(name)),
                try Data(contentsOf: straight.appendingPathComponent(name)), name)
        }
    }
}
