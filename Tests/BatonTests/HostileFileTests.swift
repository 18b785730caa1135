import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport
@testable import baton_fuzz

/// Malformed input to every reader of files a user hands Baton: crafted cases that must be
/// rejected with an error, then a seeded mutation run (the same mutations every time) through the
/// fuzzing targets, which must finish without a crash. scripts/checks/fuzz runs the same targets under
/// libFuzzer for longer.
final class HostileFileTests: FolderTestCase {
    func safetensors(header: String, dataBytes: Int = 16, headerLength: UInt64? = nil) -> Data {
        var data = Data()
        let json = Data(header.utf8)
        withUnsafeBytes(of: (headerLength ?? UInt64(json.count)).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        data.append(Data(count: dataBytes))
        return data
    }

    func rejects(_ target: String, _ input: Data, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(
            FuzzTargets.run(target: target, input: input, scratch: folder), "\(target) accepted \(what)", file: file,
            line: line)
    }

    func testCraftedSafetensorsAreRejected() {
        rejects("safetensors", safetensors(header: "{}", headerLength: 1 << 62), "a huge header length")
        rejects(
            "safetensors",
            safetensors(
                header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
                    + #""b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
            ), "overlapping offsets")
        let headers: [(String, String)] = [
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,80]}}"#, "offsets past the end"),
            (#"{"a":{"dtype":"X99","shape":[2],"data_offsets":[0,8]}}"#, "an unknown dtype"),
            (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, "shape product != bytes"),
            (#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, "a negative dimension"),
            (#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#, "an overflowing shape"),
            (#"{"a":{"dtype":"F32","shape":[1e400],"data_offsets":[0,8]}}"#, "a number out of range"),
        ]
        for (header, what) in headers { rejects("safetensors", safetensors(header: header), what) }
        var invalidUTF8 = safetensors(header: #"{"a":1}"#)
        invalidUTF8[9] = 0xFF
        rejects("safetensors", invalidUTF8, "invalid UTF-8")
        rejects("safetensors", Data([1, 2, 3]), "a file shorter than the length field")
    }

    func testCraftedStateFilesAndShardsAndLatestAreRejected() throws {
        let store = CheckpointStore(runFolder: folder.appendingPathComponent("r"))
        rejects("state", Data("{\"format_version\": 1".utf8), "truncated JSON")
        rejects("state", Data([0xC3, 0x28, 0x7B]), "invalid UTF-8")
        rejects("state", Data("{\"format_version\": 99999999999999999999999}".utf8), "an overflowing number")
        var header = [Int32](repeating: 0, count: 256)
        header[0] = TokenShard.magic; header[1] = 1; header[2] = -5
        rejects("shard", header.withUnsafeBytes { Data($0) }, "a negative token count")
        header[2] = Int32.max
        rejects("shard", header.withUnsafeBytes { Data($0) }, "a token count far past the file")
        rejects("latest", Data("../../../etc/passwd\n".utf8), "a path outside the checkpoints")
        XCTAssert(
            FuzzTargets.run(target: "latest", input: Data("step-00000002\n".utf8), scratch: folder),
            "a step name is accepted")
        try FileManager.default.createDirectory(at: store.folder, withIntermediateDirectories: true)
        for text in ["../../../etc/passwd", "step--0000001", String(repeating: "x", count: 100_000), "step-0000000a"] {
            try Data(text.utf8).write(to: store.latestURL)
            XCTAssertNil(store.latestName(), "latest '\(text.prefix(20))' is not a step folder name")
        }
    }

    /// Seeded mutations of real files: byte flips, truncations, inserted and duplicated runs,
    /// rewritten length fields. Every one must be read or rejected, never crash.
    func testSeededMutationsNeverCrashAReader() throws {
        // Real seeds: a checkpoint and a shard written by Baton itself, a tokenizer.json by `tokenizers`.
        let run = folder.appendingPathComponent("run")
        let config = FuzzTargets.seedModel
        let device = Device.cpu()
        let model = try GPT(config: config, device: device)
        try model.initializeParameters(seed: 9)
        let optimizer = try AdamW(model: model, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0.1)
        let checkpoint = try saveCheckpoint(model, optimizer, run: run, step: 2)
        let shardURL = folder.appendingPathComponent("s.bin")
        try TokenShard.write(tokens: (0..<300).map { UInt16($0 % 256) }, to: shardURL)
        let seeds: [String: Data] = [
            "safetensors": try Data(contentsOf: checkpoint.appendingPathComponent("model.safetensors")),
            "state": try Data(contentsOf: checkpoint.appendingPathComponent("state.json")),
            "shard": try Data(contentsOf: shardURL),
            "latest": Data("step-00000002\n".utf8),
            "tokenizer": try Data(
                contentsOf: TestPaths.fixtures.appendingPathComponent("tokenizer-json/llama3/tokenizer.json")),
        ]
        var generator = RandomGenerator(seed: 20261125)
        var tried = 0, accepted = 0
        let reachedBefore = FuzzTargets.reachedLoading
        for target in FuzzTargets.names {
            let seed = seeds[target]!
            XCTAssert(
                FuzzTargets.run(target: target, input: seed, scratch: folder), "the unmutated \(target) seed must read")
            for _ in 0..<400 {
                let mutated = mutate(seed, &generator)
                if FuzzTargets.run(target: target, input: mutated, scratch: folder) { accepted += 1 }
                tried += 1
            }
        }
        let reached = FuzzTargets.reachedLoading - reachedBefore
        // A crash would end the test process: reaching this line is the "no crash" result.
        print(
            "hostile files: \(tried) mutated inputs tried, \(accepted) accepted, \(tried - accepted) rejected with "
                + "an error; \(reached) safetensors inputs reached tensor loading"
        )
        XCTAssertGreaterThan(accepted, 0, "some mutations must leave a readable file")
        XCTAssertGreaterThan(tried - accepted, tried / 4, "most mutations must be caught")
        XCTAssertGreaterThan(reached, 100, "mutated checkpoints must reach tensor loading")
    }

    func mutate(_ seed: Data, _ generator: inout RandomGenerator) -> Data {
        var data = seed
        let rounds = 1 + Int(generator.next() % 4)
        for _ in 0..<rounds {
            guard !data.isEmpty else { break }
            let position = Int(generator.next() % UInt64(data.count))
            switch generator.next() % 6 {
            case 0: data[position] ^= UInt8(1 << (generator.next() % 8))  // flip a bit
            case 1: data = data.prefix(position)  // truncate
            case 2:
                data.insert(
                    contentsOf: (0..<(1 + generator.next() % 16)).map { _ in UInt8(generator.next() & 0xFF) },
                    at: position)
            case 3:  // overwrite a 4- or 8-byte field
                let width = generator.next() % 2 == 0 ? 4 : 8
                let value = [UInt64.max, 0, 1 << 31, 1 << 62, generator.next()][Int(generator.next() % 5)]
                withUnsafeBytes(of: value.littleEndian) { bytes in
                    for i in 0..<min(width, data.count - position) { data[position + i] = bytes[i] }
                }
            case 4:
                // JSON punctuation
                data[position] = [0x22, 0x7B, 0x7D, 0x5B, 0x5D, 0x2C, 0x3A, 0x2D, 0x30][Int(generator.next() % 9)]
            default:  // duplicate a run
                let length = min(Int(generator.next() % 64), data.count - position)
                data.insert(contentsOf: data[position..<(position + length)], at: position)
            }
        }
        return data
    }
}
