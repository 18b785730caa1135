import CBatonSystem
import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// llm.c's Llama 3 shard format (magic 20240801, version 7, uint32 tokens) beside GPT-2's: written,
/// read back, checked, and read by the data loader; the format a vocabulary gets.
final class TokenShardFormatTests: FolderTestCase {
    func testUInt32ShardRoundTripInLlmcsLlama3Format() throws {
        let url = folder.appendingPathComponent("x_train_000000.bin")
        let tokens: [UInt32] = [1, 65535, 65536, 128_255, 0, 151_642, 7]
        try TokenShard.write(uint32Tokens: tokens, to: url)
        let bytes = try Data(contentsOf: url)
        XCTAssertEqual(bytes.count, 1024 + 4 * tokens.count)
        let header = bytes.withUnsafeBytes { raw in
            (0..<4).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self) }
        }
        XCTAssertEqual(header, [20_240_801, 7, 7, 0])
        let shard = try TokenShard(url: url, vocabularySize: 151_643)
        XCTAssertEqual(shard.format, .uint32)
        XCTAssertEqual(try shard.tokens(start: 0, count: 7), tokens.map { Int32($0) })
        XCTAssertEqual(try shard.tokens(start: 2, count: 3), [65536, 128_255, 0])
        // Its digest is the CRC-32C of the tokens as stored, as a uint16 shard's is.
        let stored = bytes.dropFirst(1024)
        XCTAssertEqual(shard.contentDigest, stored.withUnsafeBytes { baton_crc32c(0, $0.baseAddress, $0.count) })
        XCTAssertThrowsError(try TokenShard(url: url, vocabularySize: 151_642)) {
            XCTAssert("\($0)".contains("token 151642 at position 5 is not below the vocabulary size 151642"), "\($0)")
        }
        XCTAssertEqual(TokenShard.Format.forVocabulary(65536), .uint16)
        XCTAssertEqual(TokenShard.Format.forVocabulary(65537), .uint32)
    }

    func testMalformedUInt32ShardsAreRejectedWithTheFileName() throws {
        let url = folder.appendingPathComponent("bad.bin")
        func write(version: Int32, count: Int32, tokens: [UInt32]) throws {
            var data = Data()
            TokenShard.header(.uint32, count: Int(count)).enumerated().forEach { index, value in
                withUnsafeBytes(of: index == 1 ? version.littleEndian : value) { data.append(contentsOf: $0) }
            }
            tokens.forEach { token in withUnsafeBytes(of: token.littleEndian) { data.append(contentsOf: $0) } }
            try data.write(to: url)
        }
        try write(version: 1, count: 2, tokens: [1, 2])
        XCTAssertThrowsError(try TokenShard(url: url, vocabularySize: 256)) {
            XCTAssert("\($0)".contains("bad.bin") && "\($0)".contains("version 1"), "\($0)")
        }
        try write(version: 7, count: 3, tokens: [1, 2])  // 8 bytes short
        XCTAssertThrowsError(try TokenShard(url: url, vocabularySize: 256)) {
            XCTAssert("\($0)".contains("truncated") && "\($0)".contains("1036 bytes"), "\($0)")
        }
        // A token past Int32.max is read unsigned, and refused.
        try write(version: 7, count: 1, tokens: [0xFFFF_FFF0])
        XCTAssertThrowsError(try TokenShard(url: url, vocabularySize: 1 << 20)) {
            XCTAssert("\($0)".contains("token 4294967280 at position 0"), "\($0)")
        }
    }

    /// A data folder of uint32 shards (and one of uint16 shards beside it: each shard says its
    /// format) gives the loader the same windows.
    func testTheLoaderReadsUInt32ShardsAndMixedFolders() throws {
        try TokenShard.write(
            uint32Tokens: (0..<10).map { UInt32(70_000 + $0) }, to: folder.appendingPathComponent("a_train_0.bin"))
        try TokenShard.write(tokens: (100..<107).map { UInt16($0) }, to: folder.appendingPathComponent("a_train_1.bin"))
        let dataset = try TokenDataset.open(folder: folder, split: "train", sequenceLength: 3, vocabularySize: 70_010)
        XCTAssertEqual(dataset.shards.map(\.format), [.uint32, .uint16])
        XCTAssertEqual(dataset.sampleCount, 3 + 2)
        var inputs = [Int32](repeating: 0, count: 3), targets = [Int32](repeating: 0, count: 3)
        try dataset.copySample(2, inputs: &inputs, targets: &targets)
        XCTAssertEqual(inputs, [70_006, 70_007, 70_008]); XCTAssertEqual(targets, [70_007, 70_008, 70_009])
        try dataset.copySample(4, inputs: &inputs, targets: &targets)
        XCTAssertEqual(inputs, [103, 104, 105]); XCTAssertEqual(targets, [104, 105, 106])
        let loader = DataLoader(dataset: dataset, batchSize: 5, seed: 1)
        let batch = try loader.batch(at: LoaderPosition())
        XCTAssertEqual(Set(batch.sampleIndices), Set(0..<5))
        XCTAssert(batch.inputs.contains(70_000) && batch.inputs.contains(100), "\(batch.inputs)")
    }
}
