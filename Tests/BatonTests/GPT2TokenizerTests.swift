import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// GPT-2's BPE against tiktoken and Hugging Face `tokenizers` (which agree on every case:
/// Fixtures/gpt2_tokens.json, written by scripts/fixtures/make_tokenizer_fixture.py), round trips, and
/// the tokenizer folder's bad inputs.
final class GPT2TokenizerTests: XCTestCase {
    var tokenizer: BPETokenizer { gpt2Tokenizer }

    struct Fixture: Decodable {
        struct Case: Decodable { let name: String; let text: String; let tokens: [Int32] }
        let cases: [Case]
    }

    func testEveryFixtureCaseMatchesTiktokenTokenForToken() throws {
        let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("gpt2_tokens.json"))
        let fixture = try JSONDecoder().decode(Fixture.self, from: data)
        XCTAssertEqual(fixture.cases.count, 14)
        for item in fixture.cases {
            let tokens = tokenizer.encode(item.text)
            XCTAssertEqual(tokens, item.tokens, "\(item.name): \(item.text.debugDescription)")
            XCTAssertEqual(tokenizer.decode(tokens), item.text, item.name)
        }
        XCTAssertEqual(tokenizer.vocabularySize, 50257)
        XCTAssertEqual(tokenizer.decode([GPT2Tokenizer.endOfText]), "<|endoftext|>")
    }

    func testALiteralEndOfTextIsOrdinaryText() {
        let tokens = tokenizer.encode("a<|endoftext|>b")
        XCTAssertFalse(tokens.contains(GPT2Tokenizer.endOfText))
        XCTAssertEqual(tokenizer.decode(tokens), "a<|endoftext|>b")
    }

    /// decode(encode(x)) == x for random strings drawn from every class the fixture covers.
    func testRoundTripOnRandomText() {
        let pieces = [
            "a", "Z", "é", "ß", "中", "語", "한", "م", "ا", "0", "7", "٣", "½", " ", "  ", "\t", "\n", "\n\n", "\r\n",
            "\u{a0}",
            "\u{3000}", "'", "'s", "'LL", "!", "...", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷",
            "e\u{301}", "\u{335}", "<|endoftext|>", "$",
            "€", "_",
        ]
        var generator = RandomGenerator(seed: 1129)
        for _ in 0..<500 {
            let count = 1 + Int(generator.next() % 40)
            let text = (0..<count).map { _ in pieces[Int(generator.next() % UInt64(pieces.count))] }.joined()
            let tokens = tokenizer.encode(text)
            XCTAssertEqual(tokenizer.decode(tokens), text, text.debugDescription)
            XCTAssert(tokens.allSatisfy { $0 >= 0 && $0 < 50256 }, text.debugDescription)
        }
    }

    func folder(_ vocab: String?, _ merges: String?) throws -> URL {
        let url = try TestPaths.temporaryFolder("tokenizer")
        if let vocab {
            try vocab.write(to: url.appendingPathComponent("vocab.json"), atomically: true, encoding: .utf8)
        }
        if let merges {
            try merges.write(to: url.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        }
        return url
    }

    func assertRefused(_ url: URL, mentions words: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try BPETokenizer(folder: url), file: file, line: line) { error in
            let message = "\(error)"
            XCTAssertFalse(message.contains("\n"), message, file: file, line: line)
            for word in words {
                XCTAssert(message.contains(word), "'\(word)' missing from: \(message)", file: file, line: line)
            }
        }
    }

    func testBadTokenizerFoldersAreOneLineErrors() throws {
        let vocab = try String(
            contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/gpt2-tokenizer/vocab.json"),
            encoding: .utf8)
        let merges = try String(
            contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/gpt2-tokenizer/merges.txt"),
            encoding: .utf8)
        assertRefused(try folder(vocab, nil), mentions: ["no merges.txt"])
        assertRefused(try folder(nil, merges), mentions: ["no vocab.json"])
        var lines = merges.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines[7] = "Ġt"  // one token, not two
        assertRefused(try folder(vocab, lines.joined(separator: "\n")), mentions: ["merges.txt", "line 8"])
        assertRefused(
            try folder(vocab.replacingOccurrences(of: "\"\\\"\":1,", with: "\"\\\"\":0,"), merges),
            mentions: ["vocab.json", "id 0 is given to two tokens"])
        assertRefused(try folder("[1, 2]", merges), mentions: ["vocab.json", "not a JSON object"])
    }
}

extension GPT2TokenizerTests {
    /// Encoding on several threads cuts the text where a piece always ends: the same tokens.
    func testEncodingOnThreadsGivesTheSameTokens() throws {
        let text = try String(
            contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt"), encoding: .utf8)
        let one = tokenizer.encode(text)
        XCTAssertEqual(tokenizer.encode(text, threads: 3), one)
        XCTAssertEqual(tokenizer.decode(one), text)
        XCTAssertGreaterThan(one.count, 100_000)
    }
}
