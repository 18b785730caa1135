import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// HellaSwag: reading the official format (and refusing bad lines by file and line), and scoring
/// against transformers (Fixtures/hellaswag, written by scripts/fixtures/make_hellaswag_fixture.py):
/// the same tokens, the same picks exactly, the losses within a tolerance, for GPT-2 and Llama.
final class HellaSwagTests: FolderTestCase {
    let fixture = TestPaths.fixtures.appendingPathComponent("hellaswag")
    var examplesFile: URL { fixture.appendingPathComponent("hellaswag_tiny.jsonl") }

    // MARK: reading

    func testReadsTheOfficialFormat() throws {
        let examples = try HellaSwag.read(examplesFile)
        XCTAssertEqual(examples.count, 20)
        XCTAssertEqual(examples[0].line, 1)
        XCTAssertEqual(examples[0].context, "A man lays two slices of bread on a plate. he")
        XCTAssertEqual(examples[0].endings.count, 4)
        XCTAssertEqual(examples[0].endings[1], "throws the plate into the river.")
        XCTAssertEqual(examples.map(\.label), (0..<20).map { $0 % 4 })
    }

    func testLabelAsTextBlankLinesAndOtherKeys() throws {
        let file = folder.appendingPathComponent("mixed.jsonl")
        try Data(
            """
            {"ctx": "a b", "endings": ["c", "d", "e", "f"], "label": "2", "split": "val", "ind": 7}

            {"ctx_a": "x", "ctx": "x y", "endings": ["1", "2", "3", "4"], "label": 0}
            """.utf8
        ).write(to: file)
        let examples = try HellaSwag.read(file)
        XCTAssertEqual(examples.map(\.label), [2, 0])
        XCTAssertEqual(examples.map(\.line), [1, 3])
    }

    func testBadLinesAreRefusedByFileAndLine() throws {
        let good = #"{"ctx": "a", "endings": ["b", "c", "d", "e"], "label": 1}"#
        let cases: [(line: String, mentions: String)] = [
            (#"{"ctx": "a", "label": 1}"#, "no \"endings\" key"),
            (#"{"endings": ["b", "c", "d", "e"], "label": 1}"#, "no \"ctx\" key"),
            (#"{"ctx": "a", "endings": ["b", "c", "d", "e"]}"#, "no \"label\" key"),
            (#"{"ctx": "a", "endings": ["b", "c", "d", "e"], "label": 4}"#, "label 4 is not 0, 1, 2 or 3"),
            (#"{"ctx": "a", "endings": ["b", "c", "d", "e"], "label": -1}"#, "label -1"),
            (#"{"ctx": "a", "endings": ["b", "c", "d"], "label": 1}"#, "endings has 3 entries, not 4"),
            (#"{"ctx": "a", "endings": ["b", "c", "d", 5], "label": 1}"#, "\"endings[3]\" has the wrong type"),
            (#"{"ctx": "a", "endings": ["b", "c", "d", "e"], "label": true}"#, "\"label\" has the wrong type"),
            (#"{"ctx": "", "endings": ["b", "c", "d", "e"], "label": 1}"#, "ctx is empty"),
            ("not json at all", "not JSON"),
            (#"{"ctx": "a", "endings": ["b""#, "not JSON"),
            (#"[1, 2]"#, "not a JSON object"),
        ]
        for (index, bad) in cases.enumerated() {
            let file = folder.appendingPathComponent("bad-\(index).jsonl")
            try Data((good + "\n" + good + "\n" + bad.line + "\n" + good + "\n").utf8).write(to: file)
            XCTAssertThrowsError(try HellaSwag.read(file), bad.line) { error in
                guard case BatonError.invalidFlag(let flag, let message) = error else {
                    return XCTFail("\(bad.line): \(error) is not a usage error")
                }
                XCTAssertEqual(flag, "--hellaswag")
                XCTAssert(message.hasPrefix("\(file.path) line 3: "), message)
                XCTAssert(message.contains(bad.mentions), "\(bad.mentions) missing: \(message)")
                XCTAssertFalse(message.contains("\n"), message)
            }
        }
    }

    func testAnEmptyFileIsRefused() throws {
        for (name, text) in [("empty", ""), ("blank", "\n  \n\n")] {
            let file = folder.appendingPathComponent("\(name).jsonl")
            try Data(text.utf8).write(to: file)
            XCTAssertThrowsError(try HellaSwag.read(file)) { error in
                XCTAssert(
                    ((error as? BatonError)?.message ?? "\(error)").contains("\(file.path): no examples"), "\(error)")
            }
        }
        XCTAssertThrowsError(try HellaSwag.read(folder.appendingPathComponent("absent.jsonl"))) { error in
            XCTAssert(((error as? BatonError)?.message ?? "\(error)").contains("cannot read"), "\(error)")
        }
    }

    func testAnExampleLongerThanTheContextIsRefusedNotTruncated() throws {
        let examples = try HellaSwag.read(examplesFile)
        let longest = try HellaSwag.tokenize(
            examples, tokenizer: .bytes, contextLength: 1000, vocabularySize: 256, file: examplesFile
        ).map(\.longestRow).max()!
        XCTAssertNoThrow(
            try HellaSwag.tokenize(
                examples, tokenizer: .bytes, contextLength: longest - 1, vocabularySize: 256, file: examplesFile))
        XCTAssertThrowsError(
            try HellaSwag.tokenize(
                examples, tokenizer: .bytes, contextLength: longest - 2, vocabularySize: 256, file: examplesFile)
        ) { error in
            let message = ((error as? BatonError)?.message ?? "\(error)")
            XCTAssert(message.contains("line "), message)
            XCTAssert(message.contains("\(longest) tokens"), message)
            XCTAssert(message.contains("context \(longest - 2) + 1"), message)
        }
    }

    func testRanksShareTheExamplesWhole() {
        for count in [0, 1, 5, 20, 10042] {
            for size in [1, 2, 3, 4, 8] {
                let shares = (0..<size).map { HellaSwag.share(count: count, rank: $0, size: size) }
                XCTAssertEqual(shares.map(\.count).reduce(0, +), count, "\(count) over \(size)")
                for (a, b) in zip(shares, shares.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
                XCTAssertEqual(shares.first?.lowerBound, 0)
            }
        }
    }

    // MARK: scoring against transformers

    func testGPT2ScoresAsTransformers() throws { try assertScoresMatch("gpt2", architecture: .gpt2) }

    func testLlamaScoresAsTransformers() throws { try assertScoresMatch("llama", architecture: .llama) }

    struct Expected: Decodable {
        struct Example: Decodable {
            var line: Int
            var label: Int
            var context_tokens: [Int32]
            var ending_tokens: [[Int32]]
            var sums: [Double]
            var means: [Double]
            var pick: Int
            var pick_norm: Int
        }
        var acc: Double
        var acc_norm: Double
        var examples: [Example]
    }

    /// The fixture's tokens from Baton's tokenizer, then its picks exactly and its losses within
    /// 1e-4 (relative), at the eval command's shape and at the training loop's (whole context, a
    /// batch of 14: 3 examples and 2 padding rows a pass), which must also agree with each other.
    func assertScoresMatch(_ name: String, architecture: ModelArchitecture) throws {
        let source = fixture.appendingPathComponent(name)
        let expected = try JSONDecoder().decode(
            Expected.self, from: Data(contentsOf: source.appendingPathComponent("expected.json")))
        let hf = try HuggingFaceModel(folder: source)
        XCTAssertEqual(hf.config.architecture, architecture)
        let model = try GPT(config: hf.config, device: Device.cpu(threads: 2))
        try hf.load(into: model)
        let tokenizer = try TextTokenizer.forModel(vocabularySize: hf.config.vocabularySize, tokenizerFolder: source)
        let examples = try HellaSwag.tokenize(
            try HellaSwag.read(examplesFile), tokenizer: tokenizer, contextLength: hf.config.contextLength,
            vocabularySize: hf.config.vocabularySize, file: examplesFile)
        XCTAssertEqual(examples.count, expected.examples.count)
        for (example, reference) in zip(examples, expected.examples) {
            XCTAssertEqual(example.line, reference.line)
            XCTAssertEqual(example.context, reference.context_tokens, "line \(example.line): ctx's tokens")
            XCTAssertEqual(example.endings, reference.ending_tokens, "line \(example.line): the endings' tokens")
        }
        let shape = HellaSwag.shape(for: examples, model: model)
        let shapes = [shape, (rows: 14, T: hf.config.contextLength)]
        var results: [[HellaSwag.Score]] = []
        for (rows, T) in shapes {
            let scores = try HellaSwag.score(model: model, examples: examples, rows: rows, T: T)
            for (score, reference) in zip(scores, expected.examples) {
                let at = "\(name), line \(reference.line), \(rows) x \(T)"
                XCTAssertEqual(score.label, reference.label, at)
                XCTAssertEqual(score.pick, reference.pick, "\(at): acc's pick")
                XCTAssertEqual(score.pickNorm, reference.pick_norm, "\(at): acc_norm's pick")
                for (actual, wanted) in zip(score.sums + score.means, reference.sums + reference.means) {
                    XCTAssertEqual(actual, wanted, accuracy: 1e-4 * abs(wanted), at)
                }
            }
            let result = HellaSwag.Result(scores)
            XCTAssertEqual(result.accuracy, expected.acc, accuracy: 1e-12)
            XCTAssertEqual(result.normalizedAccuracy, expected.acc_norm, accuracy: 1e-12)
            results.append(scores)
        }
        XCTAssertEqual(results[0].map(\.pick), results[1].map(\.pick))
    }
}
