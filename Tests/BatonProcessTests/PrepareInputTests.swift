import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// `baton prepare`'s default validation split (a tenth of the tokens, at most one shard), its
/// one-line refusals of inputs it cannot use (a folder, a tokenizer without <|endoftext|>, a JSONL
/// line that is not UTF-8), and `baton train`'s refusal of shards that disagree with dataset.json.
final class PrepareInputTests: FolderTestCase {
    let book = TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt")

    func write(_ name: String, _ data: Data) throws -> URL {
        let url = folder.appendingPathComponent(name)
        try data.write(to: url)
        return url
    }

    /// Shard name -> token count, and all tokens in the order they were filled (val first).
    func shards(_ out: URL) throws -> (counts: [String: Int], tokens: [Int32]) {
        let names = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".bin") }
        var counts: [String: Int] = [:], tokens: [Int32] = []
        for name in names.sorted(by: { $0.suffix(10) < $1.suffix(10) }) {
            let shard = try TokenShard(url: out.appendingPathComponent(name), vocabularySize: 50257)
            counts[name] = shard.tokenCount
            tokens += try shard.tokens(start: 0, count: shard.tokenCount)
        }
        return (counts, tokens)
    }

    func testTheDefaultValidationSplitIsATenthOfTheTokensAtMostOneShard() throws {
        let text = try String(contentsOf: book, encoding: .utf8)
        let all = [GPT2Tokenizer.endOfText] + gpt2Tokenizer.encode(text)
        XCTAssertEqual(all.count, 138_559)
        // No flag but --out: 13,855 validation tokens (a tenth, rounded down), the rest for training.
        let plain = folder.appendingPathComponent("plain")
        let result = try runBaton(["prepare", book.path, "--tokenizer", "gpt2", "--out", plain.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let (counts, tokens) = try shards(plain)
        XCTAssertEqual(counts, ["corpus_val_000000.bin": 13_855, "corpus_train_000001.bin": 124_704])
        XCTAssertEqual(tokens, all)
        // Under ten shards of tokens: a tenth for validation; the first shard's rest starts training.
        let under = folder.appendingPathComponent("under")
        XCTAssertEqual(
            try runBaton(["prepare", book.path, "--tokenizer", "gpt2", "--out", under.path, "--shard-tokens", "40000"])
                .status, 0)
        let split = try shards(under)
        XCTAssertEqual(
            split.counts,
            [
                "corpus_val_000000.bin": 13_855, "corpus_train_000001.bin": 26_145, "corpus_train_000002.bin": 40_000,
                "corpus_train_000003.bin": 40_000, "corpus_train_000004.bin": 18_559,
            ])
        XCTAssertEqual(split.tokens, all)
        // Ten shards or more: the first shard is validation, as llm.c's.
        let over = folder.appendingPathComponent("over")
        XCTAssertEqual(
            try runBaton(["prepare", book.path, "--tokenizer", "gpt2", "--out", over.path, "--shard-tokens", "13000"])
                .status, 0)
        let llmc = try shards(over)
        XCTAssertEqual(llmc.counts["corpus_val_000000.bin"], 13_000)
        XCTAssertEqual(llmc.counts["corpus_train_000001.bin"], 13_000)
        XCTAssertEqual(llmc.counts.count, 11)
        XCTAssertEqual(llmc.tokens, all)
        let help = try runBaton(["prepare", "--help"])
        XCTAssert(help.stdout.contains("10% of the tokens, at most one shard"), help.stdout)
    }

    func testAFolderAmongTheInputsIsRefused() throws {
        let text = try write("a.txt", Data(String(repeating: "Some words for a shard.\n", count: 100).utf8))
        let sub = folder.appendingPathComponent("more")
        try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)
        _ = try write("more/b.txt", Data("inside\n".utf8))
        for (inputs, flags) in [
            ([text.path, sub.path], ["--tokenizer", "gpt2"]), ([sub.path], ["--tokenizer", "gpt2"]),
            ([text.path, sub.path], []),
        ] {
            let out = folder.appendingPathComponent("out")
            let result = try runBaton(["prepare"] + inputs + ["--out", out.path] + flags)
            assertFailsInOneLine(result, mentioning: [sub.path, "folder"])
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        }
    }

    func testATokenizerWithoutEndOfTextIsRefusedAtPrepare() throws {
        let source = TestPaths.repositoryRoot.appendingPathComponent("data/gpt2-tokenizer")
        var vocab = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("vocab.json")))
                as? [String: Int])
        vocab["<|endoftext|>"] = nil
        let tokenizer = folder.appendingPathComponent("no-eot")
        try FileManager.default.createDirectory(at: tokenizer, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: vocab).write(to: tokenizer.appendingPathComponent("vocab.json"))
        try FileManager.default.copyItem(
            at: source.appendingPathComponent("merges.txt"), to: tokenizer.appendingPathComponent("merges.txt"))
        let out = folder.appendingPathComponent("out")
        let result = try runBaton(["prepare", book.path, "--tokenizer", tokenizer.path, "--out", out.path])
        assertFailsInOneLine(result, mentioning: [tokenizer.path, "<|endoftext|>"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }

    func testAJSONLLineThatIsNotUTF8SaysSo() throws {
        var data = Data("{\"text\": \"fine\"}\n{\"text\": \"caf".utf8)
        data.append(contentsOf: [0xC3, 0x28])
        data.append(Data("\"}\n".utf8))
        let input = try write("bad.jsonl", data)
        let result = try runBaton([
            "prepare", input.path, "--tokenizer", "gpt2", "--out", folder.appendingPathComponent("out").path,
        ])
        assertFailsInOneLine(result, mentioning: ["bad.jsonl", "line 2", "not valid UTF-8"])
        XCTAssertFalse(result.stderr.contains("JSON object"), result.stderr)
    }

    func train(_ data: URL, _ name: String) throws -> ProcessResult {
        try runBaton([
            "train", "--data", data.path, "--out", folder.appendingPathComponent(name).path, "--layers", "1", "--heads",
            "2",
            "--embd", "16", "--seq-len", "16", "--batch", "2", "--steps", "1", "--device", "cpu",
        ])
    }

    func testTrainRefusesShardsThatDisagreeWithDatasetJSON() throws {
        let input = try write("a.txt", Data(try String(contentsOf: book, encoding: .utf8).prefix(20_000).utf8))
        let data = folder.appendingPathComponent("data")
        XCTAssertEqual(
            try runBaton([
                "prepare", input.path, "--tokenizer", "gpt2", "--out", data.path, "--shard-tokens", "1024",
                "--val-tokens", "600",
            ]).status, 0)
        XCTAssertEqual(try train(data, "good").status, 0)
        let second = data.appendingPathComponent("corpus_train_000002.bin"), saved = try Data(contentsOf: second)
        // A shard the record does not list (here byte-level tokens beside GPT-2 ones).
        let stray = data.appendingPathComponent("corpus_train_000099.bin")
        try TokenShard.write(tokens: Array(repeating: 65, count: 300), to: stray)
        assertFailsInOneLine(try train(data, "extra"), mentioning: ["corpus_train_000099.bin", "dataset.json"])
        try FileManager.default.removeItem(at: stray)
        // A shard the record lists is missing.
        try FileManager.default.removeItem(at: second)
        assertFailsInOneLine(try train(data, "missing"), mentioning: ["corpus_train_000002.bin", "dataset.json"])
        // A shard of another length, and one of the same length with other tokens.
        try TokenShard.write(tokens: Array(repeating: 65, count: 1000), to: second)
        assertFailsInOneLine(try train(data, "length"), mentioning: ["corpus_train_000002.bin", "dataset.json"])
        try TokenShard.write(tokens: Array(repeating: 65, count: 1024), to: second)
        assertFailsInOneLine(try train(data, "tokens"), mentioning: ["corpus_train_000002.bin", "dataset.json"])
        try saved.write(to: second)
        XCTAssertEqual(try train(data, "restored").status, 0)
        // A dataset.json from before the shard list (no "shards"): nothing to compare, it still trains.
        let recordURL = data.appendingPathComponent("dataset.json")
        var record = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: recordURL)) as? [String: Any])
        XCTAssertNotNil(record["shards"])
        record["shards"] = nil
        try JSONSerialization.data(withJSONObject: record).write(to: recordURL)
        try TokenShard.write(tokens: Array(repeating: 65, count: 300), to: stray)
        XCTAssertEqual(try train(data, "old-record").status, 0)
    }
}
