import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// `baton prepare --sft`, training on its masked shards, `--init-from RUN` and `baton sample
/// --chat`, each in a fresh `baton` process. The tokenizers are the small fixture ones (GPT-2's kind
/// for the plain format, Qwen2's for ChatML), so the models stay tiny.
final class SupervisedFineTuningTests: FolderTestCase {
    let plainTokenizer = TestPaths.fixtures.appendingPathComponent("tokenizer-json/gpt2")
    let chatMLTokenizer = TestPaths.fixtures.appendingPathComponent("tokenizer-json/qwen2")
    let example = TestPaths.repositoryRoot.appendingPathComponent("data/sft-example.jsonl").path
    let tinyModel = [
        "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "16", "--batch", "2", "--device", "cpu",
        "--threads", "2", "--warmup", "2", "--lr", "3e-3", "--eval-every", "4", "--eval-batches", "2", "--log-every",
        "100",
    ]

    func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    func write(_ lines: [String], to name: String) throws -> String {
        try (lines.joined(separator: "\n") + "\n").write(toFile: path(name), atomically: true, encoding: .utf8)
        return path(name)
    }

    /// A shard's raw entries: (token, trained on).
    func entries(_ shard: String) throws -> [(token: Int32, trained: Bool)] {
        let data = try Data(contentsOf: URL(fileURLWithPath: shard))
        let header = data.prefix(12).withUnsafeBytes { raw in
            (0..<3).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self) }
        }
        XCTAssertEqual(header[0], 20_261_206, "magic")
        XCTAssertEqual(header[1], 1, "version")
        return data.dropFirst(1024).withUnsafeBytes { raw in
            (0..<Int(header[2])).map {
                let entry = raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)
                return (Int32(entry & 0x7fff_ffff), entry >> 31 == 1)
            }
        }
    }

    /// Each token of the three conversations, trained on exactly where it is an assistant's reply
    /// or its end marker, built here from the tokenizer's own encodings, piece by piece.
    func testPrepareMasksExactlyTheAssistantRepliesAndTheirEndMarkers() throws {
        let conversations: [[(String, String)]] = [
            [("user", "Hello there."), ("assistant", "Hail, friend.")],
            [
                ("system", "Be brief."), ("user", "Who fell?"), ("assistant", "Satan."), ("user", "Why?"),
                ("assistant", "Pride."),
            ],
            [("user", "And then?"), ("assistant", "He rose again.\nIn Hell.")],
        ]
        let lines = try conversations.map { messages in
            String(
                decoding: try JSONSerialization.data(withJSONObject: [
                    "messages": messages.map { ["role": $0.0, "content": $0.1] }
                ]), as: UTF8.self)
        }
        let file = try write(lines, to: "chat.jsonl")
        for (tokenizerFolder, chatML) in [(plainTokenizer, false), (chatMLTokenizer, true)] {
            let tokenizer = try BPETokenizer(folder: tokenizerFolder)
            let out = path(chatML ? "chatml" : "plain")
            let result = try runBaton(["prepare", "--sft", file, "--tokenizer", tokenizerFolder.path, "--out", out])
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssert(result.stdout.contains("chat format \(chatML ? "chatml" : "plain")"), result.stdout)
            let start = tokenizer.documentSeparator!
            let endOfText = tokenizer.endOfText!
            let imStart = tokenizer.encode("<|im_start|>", specialTokens: .matched)
            let imEnd = tokenizer.encode("<|im_end|>", specialTokens: .matched)
            if chatML { XCTAssertEqual([imStart.count, imEnd.count], [1, 1]) }
            func expected(_ messages: [(String, String)]) -> [(token: Int32, trained: Bool)] {
                var out: [(token: Int32, trained: Bool)] = [(start, false)]
                func add(_ tokens: [Int32], _ trained: Bool) { out += tokens.map { ($0, trained) } }
                for (role, content) in messages {
                    let reply = role == "assistant"
                    if chatML {
                        add(imStart + tokenizer.encode("\(role)\n"), false)
                        add(tokenizer.encode(content), reply)
                        add(imEnd, reply)
                        add(tokenizer.encode("\n"), false)
                    } else {
                        add(tokenizer.encode("<|\(role)|>\n"), false)
                        add(tokenizer.encode(content), reply)
                        add(reply ? [endOfText] : tokenizer.encode("\n"), reply)
                    }
                }
                return out
            }
            // Three conversations: the first validates, the other two train.
            let val = try entries("\(out)/corpus_val_000000.bin"), train = try entries("\(out)/corpus_train_000000.bin")
            let wantVal = expected(conversations[0]),
                wantTrain = expected(conversations[1]) + expected(conversations[2])
            XCTAssertEqual(val.map(\.token), wantVal.map(\.token))
            XCTAssertEqual(val.map(\.trained), wantVal.map(\.trained))
            XCTAssertEqual(train.map(\.token), wantTrain.map(\.token))
            XCTAssertEqual(train.map(\.trained), wantTrain.map(\.trained))
            XCTAssert(train.contains { $0.trained } && train.contains { !$0.trained })
        }
    }

    /// `--pad-to 64`: every conversation starts a window of 64 (as a chat starts at position 0),
    /// the padding is never trained on, and the trained-on tokens are the packed ones.
    func testPaddedConversationsEachStartAWindow() throws {
        let packed = path("packed"), padded = path("padded")
        try runBatonExpectingSuccess(["prepare", "--sft", example, "--tokenizer", plainTokenizer.path, "--out", packed])
        try runBatonExpectingSuccess([
            "prepare", "--sft", example, "--tokenizer", plainTokenizer.path, "--out", padded, "--pad-to", "64",
        ])
        let packedEntries = try entries("\(packed)/corpus_train_000000.bin")
        let paddedEntries = try entries("\(padded)/corpus_train_000000.bin")
        XCTAssertEqual(paddedEntries.count % 64, 1)
        XCTAssertEqual(paddedEntries.filter(\.trained).map(\.token), packedEntries.filter(\.trained).map(\.token))
        let start = try BPETokenizer(folder: plainTokenizer).documentSeparator!
        let header = try BPETokenizer(folder: plainTokenizer).encode("<|")
        // A conversation starts where an untrained start token is followed by a header (the plain
        // format's trained end of text before a second turn is not one); each is a window start.
        func conversationStarts(_ entries: [(token: Int32, trained: Bool)]) -> [Int] {
            (0..<(entries.count - 1)).filter {
                entries[$0] == (start, false) && entries[$0 + 1].token == header[0]
            }
        }
        let starts = conversationStarts(paddedEntries), conversations = conversationStarts(packedEntries)
        XCTAssertEqual(starts.count, conversations.count)
        XCTAssertGreaterThan(starts.count, 20)
        XCTAssert(starts.allSatisfy { $0 % 64 == 0 }, "\(starts)")
    }

    func testBadConversationLinesAreOneLineUsageErrorsNamingFileAndLine() throws {
        let good = #"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hail"}]}"#
        let cases = [
            ("not json", "not a JSON object"),
            (#"{"text": "no messages"}"#, "no \"messages\" list"),
            (#"{"messages": [{"role": "user"}]}"#, "messages[0] is not {\"role\": string, \"content\": string}"),
            (#"{"messages": [{"role": "wizard", "content": "x"}]}"#, "messages[0] has role \"wizard\""),
            (#"{"messages": [{"role": "user", "content": "Only a question"}]}"#, "no assistant message"),
        ]
        for (index, (bad, message)) in cases.enumerated() {
            let file = try write([good, "", bad], to: "bad\(index).jsonl")
            let out = path("out\(index)")
            let result = try runBaton(["prepare", "--sft", file, "--tokenizer", plainTokenizer.path, "--out", out])
            assertFailsInOneLine(result, mentioning: ["\(file): line 3: ", message])
            XCTAssertEqual(result.status, 2, result.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing is written on an error")
        }
        let bytes = try runBaton(["prepare", "--sft", example, "--out", path("bytes")])
        assertFailsInOneLine(bytes, mentioning: ["--sft needs --tokenizer gpt2 or DIR"])
        XCTAssertEqual(bytes.status, 2)
    }

    func prepare(_ name: String, tokenizer: URL? = nil) throws -> String {
        let out = path(name)
        let tokenizerFolder = (tokenizer ?? plainTokenizer).path
        try runBatonExpectingSuccess(["prepare", "--sft", example, "--tokenizer", tokenizerFolder, "--out", out])
        return out
    }

    func checkpointFile(_ run: String, _ step: Int, _ name: String) throws -> Data {
        try Data(
            contentsOf: CheckpointStore(runFolder: URL(fileURLWithPath: path(run))).url(step: step)
                .appendingPathComponent(name))
    }

    func metrics(_ run: String) throws -> [StepMetrics] {
        try MetricsLog.read(URL(fileURLWithPath: path(run)).appendingPathComponent("metrics.jsonl")).map {
            var m = $0; m.tokensPerSecond = 0; return m
        }
    }

    /// An SFT run stopped mid-way and resumed in a fresh process ends with the bytes of an
    /// uninterrupted one (masked validation included); the mask is part of the data's identity,
    /// so a shard whose mask changed is refused on resume.
    func testAnSFTRunResumesExactlyAndAChangedMaskIsRefused() throws {
        let data = try prepare("data", tokenizer: chatMLTokenizer)
        let common = ["--data", data, "--steps", "10"] + tinyModel + ["--grad-accum", "2"]
        try runBatonExpectingSuccess(["train", "--out", path("straight")] + common)
        try runBatonExpectingSuccess(["train", "--out", path("stopped"), "--stop-at", "5"] + common)
        let resumed = try runBatonExpectingSuccess(["train", "--out", path("stopped"), "--resume", "auto"] + common)
        XCTAssert(resumed.stdout.contains("resume: from"), resumed.stdout)
        for name in ["model.safetensors", "optimizer.safetensors"] {
            XCTAssert(try checkpointFile("straight", 10, name) == checkpointFile("stopped", 10, name), name)
        }
        let straight = try metrics("straight")
        XCTAssertEqual(straight.map(\.step), Array(1...10))
        XCTAssertEqual(try metrics("stopped"), straight)
        XCTAssert(straight.allSatisfy { $0.loss.isFinite && $0.loss > 0 })
        XCTAssert(straight.contains { $0.valLoss != nil }, "a masked validation loss is logged")
        // One mask bit flipped (same tokens, same size): the data is not the data the run trained on.
        let shard = URL(fileURLWithPath: data).appendingPathComponent("corpus_train_000000.bin")
        var bytes = try Data(contentsOf: shard)
        bytes[1024 + 4 * 3 + 3] ^= 0x80
        try bytes.write(to: shard)
        let refused = try runBaton(["train", "--out", path("stopped"), "--resume", "auto", "--steps", "12"] + common)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssert(refused.stderr.contains("corpus_train_000000.bin"), refused.stderr)
    }

    /// `--init-from RUN`: its newest checkpoint's weights at step 0, a fresh optimizer, the source
    /// recorded; then `sample --chat` answers each line of a pipe on one line, the same each time.
    func testInitFromARunThenChat() throws {
        let data = try prepare("data")
        try runBatonExpectingSuccess(["train", "--out", path("base"), "--data", data, "--steps", "4"] + tinyModel)
        let started = try runBatonExpectingSuccess(
            [
                "train", "--out", path("tuned"), "--init-from", path("base"), "--data", data, "--steps", "6",
                "--stop-at", "0",
            ] + tinyModel)
        let source = CheckpointStore(runFolder: URL(fileURLWithPath: path("base"))).url(step: 4)
        XCTAssert(started.stdout.contains("init: weights from \(source.path)"), started.stdout)
        let base = try SafeTensors.read(source.appendingPathComponent("model.safetensors"))
        let tuned = try SafeTensors.read(
            CheckpointStore(runFolder: URL(fileURLWithPath: path("tuned"))).url(step: 0)
                .appendingPathComponent("model.safetensors"))
        for name in base.names { XCTAssertEqual(try tuned.floats(name), try base.floats(name), name) }
        let moments = try SafeTensors.read(
            CheckpointStore(runFolder: URL(fileURLWithPath: path("tuned"))).url(step: 0)
                .appendingPathComponent("optimizer.safetensors"))
        for name in moments.names { XCTAssert(try moments.floats(name).allSatisfy { $0 == 0 }, name) }
        let config = try String(contentsOfFile: path("tuned") + "/config.json", encoding: .utf8)
        XCTAssert(config.contains(source.path), config)
        try runBatonExpectingSuccess(["train", "--out", path("tuned"), "--resume", "auto"] + tinyModel)

        func chat() throws -> ProcessResult {
            let process = Process()
            process.executableURL = TestPaths.batonExecutable
            process.arguments = ["sample", path("tuned"), "--chat", "--length", "12", "--device", "cpu"]
            process.environment = inheritedEnvironment
            let input = Pipe(), output = Pipe(), errors = Pipe()
            process.standardInput = input
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            input.fileHandleForWriting.write(Data("Who fell from Heaven?\nSay hello.\n".utf8))
            try input.fileHandleForWriting.close()
            let out = output.fileHandleForReading.readDataToEndOfFile()
            let err = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return ProcessResult(
                status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self),
                stderr: String(decoding: err, as: UTF8.self))
        }
        let first = try chat()
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertEqual(first.stdout.filter { $0 == "\n" }.count, 2, "two lines in, two replies out: \(first.stdout)")
        XCTAssertEqual(try chat().stdout, first.stdout)
    }
}
