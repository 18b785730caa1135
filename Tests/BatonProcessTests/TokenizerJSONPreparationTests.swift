import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// `baton prepare --tokenizer DIR` with a tokenizer.json: the bundled Llama 3-style tokenizer on
/// the poem (shards, dataset.json, train, sample, eval), special-token text inside documents, a
/// vocabulary past 65,536 (uint32 shards that train and eval read), and a bad tokenizer refused.
final class TokenizerJSONPreparationTests: XCTestCase {
    var folder: URL!
    let llama = TestPaths.repositoryRoot.appendingPathComponent("data/llama-tokenizer")

    override func setUpWithError() throws { folder = try TestPaths.temporaryFolder("tokenizer-json") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    /// Every token of a data folder, in the order prepare wrote them (val_000000 first).
    func allTokens(_ out: URL, vocabularySize: Int) throws -> [Int32] {
        let names = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".bin") }
        return try names.sorted { $0.suffix(10) < $1.suffix(10) }.flatMap { name -> [Int32] in
            let shard = try TokenShard(url: out.appendingPathComponent(name), vocabularySize: vocabularySize)
            return try shard.tokens(start: 0, count: shard.tokenCount)
        }
    }

    func record(_ out: URL) throws -> [String: Any] {
        try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("dataset.json")))
                as? [String: Any])
    }

    let tiny = [
        "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "16", "--batch", "2", "--eval-batches", "1",
        "--device", "cpu",
    ]

    func testTheBundledLlamaTokenizerPreparesTrainsAndSamples() throws {
        let poem = TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt")
        let out = folder.appendingPathComponent("data")
        let prepared = try runBatonExpectingSuccess([
            "prepare", poem.path, "--tokenizer", llama.path, "--out", out.path, "--shard-tokens", "50000",
        ])
        XCTAssert(prepared.stdout.contains("1 documents"), prepared.stdout)
        let tokenizer = try BPETokenizer(folder: llama)
        let text = try String(contentsOf: poem, encoding: .utf8)
        XCTAssertEqual(try allTokens(out, vocabularySize: 4096), [0] + tokenizer.encode(text))
        let record = try record(out)
        XCTAssertEqual(record["tokenizer"] as? String, "tokenizer.json")
        XCTAssertEqual(record["vocab_size"] as? Int, 4096)
        XCTAssertEqual(record["document_separator"] as? Int, 0)
        XCTAssertEqual(record["token_bytes"] as? Int, 2)
        for name in ["tokenizer.json", "tokenizer_config.json"] {
            XCTAssertEqual(
                try Data(contentsOf: out.appendingPathComponent("tokenizer/\(name)")),
                try Data(contentsOf: llama.appendingPathComponent(name)))
        }
        // --overwrite replaces it whole (its tokenizer/ copy is prepare's own), and the same bytes come back.
        let shards = try allTokens(out, vocabularySize: 4096)
        try runBatonExpectingSuccess([
            "prepare", poem.path, "--tokenizer", llama.path, "--out", out.path, "--shard-tokens", "50000",
            "--overwrite",
        ])
        XCTAssertEqual(try allTokens(out, vocabularySize: 4096), shards)
        // 4,096 tokens fit uint16: GPT-2's shard format.
        let val = out.appendingPathComponent("corpus_val_000000.bin")
        XCTAssertEqual(try TokenShard(url: val, vocabularySize: 4096).format, .uint16)

        let run = folder.appendingPathComponent("run").path
        let trained = try runBatonExpectingSuccess(["train", "--data", out.path, "--out", run, "--steps", "3"] + tiny)
        XCTAssert(
            trained.stdout.contains("data: tokenizer.json tokens (dataset.json): vocabulary 4096"), trained.stdout)
        // sample encodes the prompt and decodes with the data's tokenizer; with no prompt it starts
        // after the document separator, and --stop-at-eot stops at it.
        let sampled = try runBatonExpectingSuccess([
            "sample", run, "--prompt", "Of Man's First", "--length", "20", "--device", "cpu", "--stop-at-eot",
        ])
        XCTAssert(sampled.stdout.hasPrefix("Of Man's First"), sampled.stdout)
        XCTAssertNotEqual(sampled.stdout, "Of Man's First\n")
        let unprompted = try runBatonExpectingSuccess(["sample", run, "--length", "5", "--device", "cpu"])
        XCTAssertFalse(unprompted.stdout.isEmpty)
        let evaluated = try runBatonExpectingSuccess([
            "eval", run, "--data", val.path, "--sequences", "4", "--device", "cpu",
        ])
        XCTAssert(evaluated.stdout.contains("loss: "), evaluated.stdout)
    }

    /// Special-token text inside a document is ordinary text; an added token that is not special
    /// is matched, as Hugging Face matches it; each document follows the separator.
    func testSpecialTokenTextInsideADocumentIsOrdinaryText() throws {
        let kind = TestPaths.fixtures.appendingPathComponent("tokenizer-json/llama3")
        let tokenizer = try BPETokenizer(folder: kind)
        let documents = ["a <|end_of_text|> b", "<|begin_of_text|>c <tool>d</tool>"]
        let jsonl = folder.appendingPathComponent("docs.jsonl")
        try Data(
            documents.map { String(data: try JSONSerialization.data(withJSONObject: ["text": $0]), encoding: .utf8)! }
                .joined(separator: "\n").utf8
        ).write(to: jsonl)
        let out = folder.appendingPathComponent("out")
        var options = CorpusPreparation.Options()
        options.shardTokens = 1024
        options.valTokens = 3
        _ = try CorpusPreparation(tokenizerFolder: kind, options: options).prepare(files: [jsonl], outputFolder: out)
        let bos = try XCTUnwrap(tokenizer.beginOfText)
        let tokens = try allTokens(out, vocabularySize: tokenizer.vocabularySize)
        XCTAssertEqual(tokens, documents.flatMap { [bos] + tokenizer.encode($0) })
        XCTAssertEqual(tokens.filter { $0 == bos }.count, 2)
        XCTAssertFalse(tokens.contains(tokenizer.endOfText!))
        // <tool> and </tool> are added tokens, not special: one token each.
        XCTAssertEqual(tokenizer.decode(tokenizer.encode("<tool>")), "<tool>")
        XCTAssertEqual(tokenizer.encode("<tool>").count, 1)
        XCTAssertEqual(tokenizer.encode("</tool>").count, 1)
    }

    /// A tokenizer.json of 65,793 tokens (every byte pair, <|endoftext|> after them): uint32 shards
    /// in llm.c's Llama 3 format, read by train and eval.
    func testAVocabularyPast65536WritesUInt32ShardsThatTrainAndEvalRead() throws {
        let tokenizerFolder = try largeTokenizer()
        let tokenizer = try BPETokenizer(folder: tokenizerFolder)
        XCTAssertEqual(tokenizer.vocabularySize, 65_793)
        let text = try bundledText(prefix: 6000)
        let out = folder.appendingPathComponent("data")
        try runBatonExpectingSuccess([
            "prepare", try write("book.txt", text).path, "--tokenizer", tokenizerFolder.path, "--out", out.path,
            "--val-tokens", "300",
        ])
        let tokens = try allTokens(out, vocabularySize: 65_793)
        XCTAssertEqual(tokens, [65_792] + tokenizer.encode(text))
        XCTAssert(tokens.contains { $0 > 65_535 }, "no token past uint16")
        let val = out.appendingPathComponent("corpus_val_000000.bin")
        let header = try Data(contentsOf: val).prefix(8).withUnsafeBytes {
            [$0.loadUnaligned(as: Int32.self), $0.loadUnaligned(fromByteOffset: 4, as: Int32.self)]
        }
        XCTAssertEqual(header, [20_240_801, 7])
        XCTAssertEqual(try record(out)["token_bytes"] as? Int, 4)
        let run = folder.appendingPathComponent("run").path
        let trained = try runBatonExpectingSuccess(["train", "--data", out.path, "--out", run, "--steps", "2"] + tiny)
        XCTAssert(trained.stdout.contains("vocabulary 65793"), trained.stdout)
        let evaluated = try runBatonExpectingSuccess([
            "eval", run, "--data", val.path, "--sequences", "2", "--device", "cpu",
        ])
        XCTAssert(evaluated.stdout.contains("loss: "), evaluated.stdout)
        // A model with a smaller vocabulary refuses the shard, naming a token and the model.
        let small = try runBaton(
            [
                "train", "--data", out.path, "--out", folder.appendingPathComponent("small").path, "--vocab-size",
                "65536",
                "--steps", "1",
            ] + tiny)
        assertFailsInOneLine(small, mentioning: ["is not below the vocabulary size 65536"])
    }

    func testABadTokenizerJSONIsRefusedInOneLineWithNothingWritten() throws {
        let bad = folder.appendingPathComponent("bad")
        try FileManager.default.createDirectory(at: bad, withIntermediateDirectories: true)
        var json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: llama.appendingPathComponent("tokenizer.json")))
            as! [String: Any]
        var model = json["model"] as! [String: Any]
        model["byte_fallback"] = true
        json["model"] = model
        try JSONSerialization.data(withJSONObject: json).write(to: bad.appendingPathComponent("tokenizer.json"))
        let out = folder.appendingPathComponent("out")
        let book = try write("b.txt", "Of Man")
        let result = try runBaton(["prepare", book.path, "--tokenizer", bad.path, "--out", out.path])
        XCTAssertEqual(result.status, 1)
        assertFailsInOneLine(result, mentioning: [bad.appendingPathComponent("tokenizer.json").path, "byte_fallback"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }

    func write(_ name: String, _ text: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url
    }

    /// 256 byte tokens, then every pair of bytes (pairs of ASCII letters last, so the poem's are
    /// past 65,535), each pair a merge in that order, then <|endoftext|> as an added special token.
    func largeTokenizer() throws -> URL {
        let letters = Set((UInt8(ascii: "a")...UInt8(ascii: "z")).map { $0 } + (UInt8(ascii: "A")...UInt8(ascii: "Z")))
        let order = (0...255).map(UInt8.init).sorted { (letters.contains($0) ? 1 : 0) < (letters.contains($1) ? 1 : 0) }
        var vocab: [String: Int] = [:]
        for byte in 0...255 { vocab[ByteAlphabet.symbol(of: [UInt8(byte)])] = byte }
        var merges: [[String]] = []
        for first in order {
            for second in order {
                let left = ByteAlphabet.symbol(of: [first]), right = ByteAlphabet.symbol(of: [second])
                vocab[left + right] = vocab.count
                merges.append([left, right])
            }
        }
        let json: [String: Any] = [
            "version": "1.0",
            "added_tokens": [["id": vocab.count, "content": "<|endoftext|>", "special": true, "normalized": false]],
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
            "decoder": ["type": "ByteLevel"],
            "model": ["type": "BPE", "vocab": vocab, "merges": merges],
        ]
        let url = folder.appendingPathComponent("large")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: json).write(to: url.appendingPathComponent("tokenizer.json"))
        return url
    }
}
