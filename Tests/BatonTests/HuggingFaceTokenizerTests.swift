import CBatonSystem
import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// tokenizer.json against Hugging Face `tokenizers`, token for token: four small tokenizers of the
/// kinds Baton reads (Llama 3, Qwen2, SmolLM, GPT-2; Fixtures/tokenizer-json, written by
/// scripts/fixtures/make_tokenizer_json_fixture.py) on the GPT-2 fixture's texts, more, and random
/// strings of hostile pieces; the beginning and end of text each declares; encoding cut at safe
/// places; GPT-2's own vocabulary through tokenizer.json.
final class HuggingFaceTokenizerTests: XCTestCase {
    static let folder = TestPaths.fixtures.appendingPathComponent("tokenizer-json")

    struct Fixture: Decodable {
        struct Case: Decodable { let matched: [Int32]; let ordinary: [Int32] }
        struct Kind: Decodable {
            let vocab_size: Int
            let bos_document: [Int32]
            let cases: [String: Case]
            let random: [[Int32]]
            /// The pre-tokenizer's pieces of each text: their lengths in bytes.
            let pieces: [String: String]
            let random_pieces: [String]
        }
        let texts: [String: String]
        let random_texts: [String]
        let kinds: [String: Kind]
    }

    static let fixture: Fixture = try! JSONDecoder().decode(
        Fixture.self, from: Data(contentsOf: folder.appendingPathComponent("tokens.json")))

    func tokenizer(_ kind: String) throws -> BPETokenizer {
        try BPETokenizer(folder: Self.folder.appendingPathComponent(kind))
    }

    func testEveryKindMatchesHuggingFaceTokenForToken() throws {
        let fixture = Self.fixture
        XCTAssertEqual(fixture.kinds.keys.sorted(), ["gpt2", "llama3", "qwen2", "smollm"])
        XCTAssertEqual(fixture.texts.count, 21)
        for (name, kind) in fixture.kinds {
            let tokenizer = try tokenizer(name)
            XCTAssertEqual(tokenizer.kind, .tokenizerJSON)
            XCTAssertEqual(tokenizer.vocabularySize, kind.vocab_size, name)
            for (textName, text) in fixture.texts {
                let expected = try XCTUnwrap(kind.cases[textName])
                XCTAssertEqual(
                    tokenizer.encode(text, specialTokens: .matched), expected.matched, "\(name): \(textName)")
                let ordinary = tokenizer.encode(text)
                XCTAssertEqual(ordinary, expected.ordinary, "\(name): \(textName) (special tokens as text)")
                let normalized = name == "qwen2" ? text.precomposedStringWithCanonicalMapping : text
                XCTAssertEqual(tokenizer.decode(ordinary), normalized, "\(name): \(textName)")
            }
            for (text, expected) in zip(fixture.random_texts, kind.random) {
                XCTAssertEqual(tokenizer.encode(text), expected, "\(name): \(text.debugDescription)")
            }
        }
    }

    /// Each pre-tokenizer alone cuts every text where Hugging Face's does (the merges of a small
    /// vocabulary would hide a wrong cut).
    func testEveryPreTokenizerCutsWhereHuggingFacesDoes() throws {
        let fixture = Self.fixture
        for (name, kind) in fixture.kinds {
            let tokenizer = try tokenizer(name)
            let expected = fixture.texts.keys.sorted().map { kind.pieces[$0]! } + kind.random_pieces
            let texts = fixture.texts.keys.sorted().map { fixture.texts[$0]! } + fixture.random_texts
            for (text, expected) in zip(texts, expected) {
                var lengths: [Int] = []
                var bytes = Array(text.utf8)
                bytes.withUnsafeMutableBufferPointer {
                    tokenizer.preTokenizer.forEachPiece(UnsafeBufferPointer($0)) { lengths.append($0.count) }
                }
                XCTAssertEqual(
                    lengths.map(String.init).joined(separator: ","), expected, "\(name): \(text.debugDescription)")
            }
        }
    }

    /// What each declares, and so what prepare puts before every document.
    func testBeginningAndEndOfTextAreTheOnesEachDeclares() throws {
        let llama = try tokenizer("llama3")
        // Its post_processor puts <|begin_of_text|> before every text: so does prepare.
        XCTAssertEqual(llama.beginOfText, Self.fixture.kinds["llama3"]!.bos_document.first)
        XCTAssertTrue(llama.addsBeginOfText)
        XCTAssertEqual(llama.documentSeparator, llama.beginOfText)
        XCTAssertEqual(llama.decode([llama.endOfText!]), "<|end_of_text|>")
        XCTAssertEqual(llama.endsOfDocument, [llama.beginOfText!, llama.endOfText!])
        let qwen = try tokenizer("qwen2")
        XCTAssertNil(qwen.beginOfText)
        XCTAssertEqual(qwen.documentSeparator, qwen.endOfText)
        XCTAssertEqual(qwen.decode([qwen.endOfText!]), "<|endoftext|>")
        let smol = try tokenizer("smollm")
        XCTAssertEqual(smol.beginOfText, 0)
        XCTAssertEqual(smol.endOfText, 0)
        XCTAssertFalse(smol.addsBeginOfText)
        XCTAssertEqual(smol.documentSeparator, 0)
        // No tokenizer_config.json: the added special <|endoftext|> is the end.
        let gpt2 = try tokenizer("gpt2")
        XCTAssertEqual(gpt2.documentSeparator, 600)
        XCTAssertEqual(gpt2.decode([600]), "<|endoftext|>")
    }

    /// Cutting a text where isSafeCut allows leaves its tokens as they are, for every kind.
    func testTextCutAtSafePlacesEncodesAsAWhole() throws {
        let text = Self.fixture.texts.values.sorted().joined(separator: "\n") + Self.fixture.random_texts.joined()
        let poem = try String(
            contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt"), encoding: .utf8)
        for name in Self.fixture.kinds.keys {
            let tokenizer = try tokenizer(name)
            let bytes = Array(text.utf8)
            // Where the pre-tokenizer's pieces end (a small vocabulary's tokens could hide a wrong cut).
            func pieceEnds(_ part: ArraySlice<UInt8>) -> [Int] {
                var ends: [Int] = []
                var end = part.startIndex
                Array(part).withUnsafeBufferPointer { buffer in
                    tokenizer.preTokenizer.forEachPiece(buffer) { piece in
                        end += piece.count
                        ends.append(end)
                    }
                }
                return ends
            }
            let whole = pieceEnds(bytes[...])
            var cuts = 0
            for i in 1..<bytes.count where bytes.withUnsafeBufferPointer({ tokenizer.isSafeCut($0, at: i) }) {
                cuts += 1
                let left = String(decoding: bytes[..<i], as: UTF8.self)
                let right = String(decoding: bytes[i...], as: UTF8.self)
                XCTAssertEqual(
                    tokenizer.encode(left) + tokenizer.encode(right), tokenizer.encode(text), "\(name) at \(i)")
                XCTAssertEqual(pieceEnds(bytes[..<i]) + pieceEnds(bytes[i...]), whole, "\(name): pieces cut at \(i)")
            }
            XCTAssertGreaterThan(cuts, 10, name)
            let long = poem + String(repeating: text, count: 20)
            XCTAssertEqual(tokenizer.encode(long, threads: 3), tokenizer.encode(long), name)
            // Many short documents and a long one, on threads: each as one pass gives it.
            let documents = (0..<400).map { Self.fixture.random_texts[$0 % 48] + "\n" + String($0) } + [long]
            XCTAssertEqual(
                tokenizer.encode(documents: documents, threads: 3), documents.map { tokenizer.encode($0) }, name)
        }
    }

    /// data/llama-tokenizer on the whole poem: the count and CRC-32C its README records from `tokenizers`.
    func testTheBundledLlamaTokenizerTokenizesThePoemAsTokenizersDoes() throws {
        let folder = TestPaths.repositoryRoot.appendingPathComponent("data/llama-tokenizer")
        let readme = try String(contentsOf: folder.appendingPathComponent("README.md"), encoding: .utf8)
            .split(whereSeparator: \.isWhitespace).joined(separator: " ")
        let words = try XCTUnwrap(readme.components(separatedBy: "the poem is ").last?.split(separator: " "))
        let count = Int(words[0].replacingOccurrences(of: ",", with: "")), crc = UInt32(words[3], radix: 16)
        let poem = try String(
            contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt"), encoding: .utf8)
        let tokenizer = try BPETokenizer(folder: folder)
        let tokens = tokenizer.encode(poem, threads: 2)
        XCTAssertEqual(tokens.count, count)
        let stored = tokens.map { UInt16($0).littleEndian }
        XCTAssertEqual(stored.withUnsafeBytes { baton_crc32c(0, $0.baseAddress, $0.count) }, crc)
        XCTAssertEqual(tokenizer.vocabularySize, 4096)
        XCTAssertEqual(tokenizer.documentSeparator, 0)
        XCTAssertEqual(tokenizer.decode(tokens), poem)
    }

    /// GPT-2's real vocabulary and merges, written as a tokenizer.json (merges as pairs, as
    /// `tokenizers` writes them now), tokenize as vocab.json and merges.txt do.
    func testGPT2sVocabularyAsTokenizerJSONMatchesTiktoken() throws {
        let source = TestPaths.repositoryRoot.appendingPathComponent("data/gpt2-tokenizer")
        let vocab = try JSONSerialization.jsonObject(
            with: Data(contentsOf: source.appendingPathComponent("vocab.json")))
        let merges = try String(contentsOf: source.appendingPathComponent("merges.txt"), encoding: .utf8)
            .split(separator: "\n").dropFirst().map { $0.split(separator: " ").map(String.init) }
        let json: [String: Any] = [
            "version": "1.0",
            "added_tokens": [
                [
                    "id": 50256, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false,
                    "normalized": true, "special": true,
                ]
            ],
            "normalizer": NSNull(),
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            "post_processor": [
                "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true,
            ],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "vocab": vocab, "merges": merges],
        ]
        let folder = try TestPaths.temporaryFolder("gpt2-json")
        try JSONSerialization.data(withJSONObject: json).write(to: folder.appendingPathComponent("tokenizer.json"))
        let tokenizer = try BPETokenizer(folder: folder)
        XCTAssertEqual(tokenizer.vocabularySize, 50257)
        XCTAssertEqual(tokenizer.documentSeparator, GPT2Tokenizer.endOfText)
        struct Cases: Decodable { struct Case: Decodable { let text: String; let tokens: [Int32] }; let cases: [Case] }
        let cases = try JSONDecoder().decode(
            Cases.self, from: Data(contentsOf: TestPaths.fixtures.appendingPathComponent("gpt2_tokens.json")))
        for item in cases.cases { XCTAssertEqual(tokenizer.encode(item.text), item.tokens, item.text) }
    }
}

/// Bad tokenizer.json files and the kinds Baton does not implement: each a one-line error naming
/// the file and the key or thing.
extension HuggingFaceTokenizerTests {
    /// The llama3 fixture's tokenizer.json, changed by `change`, in a folder of its own (with
    /// `config` as tokenizer_config.json when given).
    func folder(config: String? = nil, _ change: (inout [String: Any]) -> Void) throws -> URL {
        var json =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: Self.folder.appendingPathComponent("llama3/tokenizer.json"))) as! [String: Any]
        change(&json)
        let folder = try TestPaths.temporaryFolder("bad-tokenizer")
        try JSONSerialization.data(withJSONObject: json).write(to: folder.appendingPathComponent("tokenizer.json"))
        if let config { try Data(config.utf8).write(to: folder.appendingPathComponent("tokenizer_config.json")) }
        return folder
    }

    func assertRefused(
        _ folder: URL, file name: String = "tokenizer.json", mentions words: [String], file: StaticString = #filePath,
        line: UInt = #line
    ) {
        XCTAssertThrowsError(try BPETokenizer(folder: folder), file: file, line: line) { error in
            let message = "\(error)"
            XCTAssertFalse(message.contains("\n"), message, file: file, line: line)
            for word in [folder.appendingPathComponent(name).path] + words {
                XCTAssert(message.contains(word), "'\(word)' missing from: \(message)", file: file, line: line)
            }
        }
    }

    func testBadTokenizerJSONFilesAreOneLineErrors() throws {
        let notJSON = try TestPaths.temporaryFolder("not-json")
        try Data("{\"model\": ".utf8).write(to: notJSON.appendingPathComponent("tokenizer.json"))
        assertRefused(notJSON, mentions: ["not a JSON object"])
        assertRefused(try folder { $0["model"] = nil }, mentions: ["model is missing"])
        assertRefused(
            try folder { $0["model"] = ["type": "Unigram", "vocab": [["a", 0.0]]] }, mentions: ["model.type 'Unigram'"])
        func model(_ change: @escaping (inout [String: Any]) -> Void) throws -> URL {
            try folder { json in
                var model = json["model"] as! [String: Any]
                change(&model)
                json["model"] = model
            }
        }
        assertRefused(try model { $0["merges"] = nil }, mentions: ["model.merges is missing"])
        assertRefused(
            try model { $0["merges"] = ($0["merges"] as! [Any]) + [["t", "zzz"]] },
            mentions: ["model.merges[", "not a merge of two tokens"])
        assertRefused(try model { $0["merges"] = ["t h e"] }, mentions: ["model.merges[0]"])
        assertRefused(
            try model {
                var vocab = $0["vocab"] as! [String: Any]; vocab["h"] = 99_999; $0["vocab"] = vocab
            },
            mentions: ["model.vocab", "id 99999", "not in 0..<"])
        assertRefused(
            try model {
                var vocab = $0["vocab"] as! [String: Any]; vocab["h"] = vocab["t"]; $0["vocab"] = vocab
            },
            mentions: ["model.vocab", "given to two tokens"])
        assertRefused(
            try model {
                // A whole word no merge makes (see the fixture's script), renamed: not byte-level.
                var vocab = $0["vocab"] as! [String: Any]
                vocab["hello world"] = vocab.removeValue(forKey: "ĠParadise")
                $0["vocab"] = vocab
            },
            mentions: ["model.vocab", "\"hello world\"", "byte-level alphabet"])
        assertRefused(try model { $0["dropout"] = 0.1 }, mentions: ["model.dropout"])
        // A SentencePiece-style tokenizer (Llama 2's kind): byte fallback, Metaspace.
        assertRefused(try model { $0["byte_fallback"] = true }, mentions: ["model.byte_fallback", "SentencePiece"])
        assertRefused(
            try folder { $0["pre_tokenizer"] = ["type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"] },
            mentions: ["Metaspace", "SentencePiece"])
        assertRefused(
            try folder {
                $0["normalizer"] = ["type": "Sequence", "normalizers": [["type": "Prepend", "prepend": "▁"]]]
            },
            mentions: ["normalizer Sequence [Prepend]"])
        assertRefused(try folder { $0["normalizer"] = ["type": "NFKC"] }, mentions: ["normalizer 'NFKC'"])
        assertRefused(try folder { $0["decoder"] = ["type": "WordPiece"] }, mentions: ["decoder 'WordPiece'"])
    }

    func testPreTokenizersBatonDoesNotImplementAreRefusedByName() throws {
        func split(_ pattern: String, behavior: String = "Isolated", byteLevel: [String: Any]? = nil) throws -> URL {
            try folder { json in
                var sequence = json["pre_tokenizer"] as! [String: Any]
                var steps = sequence["pretokenizers"] as! [[String: Any]]
                steps[0]["pattern"] = ["Regex": pattern]
                steps[0]["behavior"] = behavior
                if let byteLevel { steps[1] = byteLevel }
                sequence["pretokenizers"] = steps
                json["pre_tokenizer"] = sequence
            }
        }
        let unknown = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]+"#
        assertRefused(
            try split(unknown), mentions: ["pre_tokenizer Split pattern '(?i:'s", "Llama 3's, Qwen2's, GPT-2's"])
        assertRefused(try split(#"\s+"#, behavior: "Removed"), mentions: ["pattern '\\s+'"])
        let llama = PreTokenizer.patterns.first { $0.value == .llama3 }!.key
        assertRefused(try split(llama, behavior: "MergedWithPrevious"), mentions: ["behavior 'MergedWithPrevious'"])
        assertRefused(
            try split(llama, byteLevel: ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true]),
            mentions: ["use_regex after a Split"])
        assertRefused(
            try folder { $0["pre_tokenizer"] = ["type": "ByteLevel", "add_prefix_space": true] },
            mentions: ["ByteLevel add_prefix_space"])
        assertRefused(
            try folder { $0["pre_tokenizer"] = ["type": "Whitespace"] }, mentions: ["pre_tokenizer [Whitespace]"])
        assertRefused(try folder { $0["pre_tokenizer"] = NSNull() }, mentions: ["no pre_tokenizer"])
    }

    func testAddedTokensAndDeclaredEndsAreChecked() throws {
        func added(_ change: @escaping (inout [[String: Any]]) -> Void) throws -> URL {
            try folder { json in
                var list = json["added_tokens"] as! [[String: Any]]
                change(&list)
                json["added_tokens"] = list
            }
        }
        // Hugging Face numbers added tokens after the model's 603: the second is 604, not 700.
        assertRefused(
            try added { $0[1]["id"] = 700 },
            mentions: ["added_tokens[1] \"<|end_of_text|>\" has id 700", "gives it 604", "fix the id"])
        assertRefused(
            try added { $0[1]["content"] = "<|begin_of_text|>" }, mentions: ["added_tokens[1]", "listed twice"])
        assertRefused(try added { $0[2]["lstrip"] = true }, mentions: ["added_tokens[2]", "lstrip"])
        assertRefused(try added { $0[0]["content"] = "" }, mentions: ["added_tokens[0] has no content"])
        func configured(_ config: String, kind: String = "llama3") throws -> URL {
            let folder = try TestPaths.temporaryFolder("bad-config")
            try FileManager.default.copyItem(
                at: Self.folder.appendingPathComponent("\(kind)/tokenizer.json"),
                to: folder.appendingPathComponent("tokenizer.json"))
            try Data(config.utf8).write(to: folder.appendingPathComponent("tokenizer_config.json"))
            return folder
        }
        assertRefused(
            try configured(#"{"eos_token": "<|nope|>"}"#), file: "tokenizer_config.json",
            mentions: ["eos_token \"<|nope|>\" is not a token of", "fix eos_token"])
        assertRefused(try configured("[1]"), file: "tokenizer_config.json", mentions: ["not a JSON object"])
        assertRefused(
            try configured(#"{"add_bos_token": true, "bos_token": null}"#, kind: "qwen2"),
            file: "tokenizer_config.json",
            mentions: ["add_bos_token is true, but no bos_token"])
        // add_bos_token false overrides the post_processor: documents are then separated by the end.
        let noBOS = try BPETokenizer(
            folder: try configured(#"{"add_bos_token": false, "eos_token": "<|end_of_text|>"}"#))
        XCTAssertFalse(noBOS.addsBeginOfText)
        XCTAssertEqual(noBOS.documentSeparator, noBOS.endOfText)
    }

    /// A folder with both tokenizer.json and vocab.json reads tokenizer.json, as Hugging Face's fast
    /// tokenizer does; without tokenizer.json, the GPT-2 files.
    func testTokenizerJSONTakesPrecedenceOverVocabJSON() throws {
        let folder = try TestPaths.temporaryFolder("both")
        for name in ["vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(
                at: TestPaths.repositoryRoot.appendingPathComponent("data/gpt2-tokenizer/\(name)"),
                to: folder.appendingPathComponent(name))
        }
        XCTAssertEqual(try BPETokenizer(folder: folder).kind, .gpt2)
        try FileManager.default.copyItem(
            at: Self.folder.appendingPathComponent("qwen2/tokenizer.json"),
            to: folder.appendingPathComponent("tokenizer.json"))
        let tokenizer = try BPETokenizer(folder: folder)
        XCTAssertEqual(tokenizer.kind, .tokenizerJSON)
        XCTAssertEqual(tokenizer.vocabularySize, 603)
    }
}
