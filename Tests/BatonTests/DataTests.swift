import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

final class DataTests: FolderTestCase {
    func testShardRoundTripInLlmcFormat() throws {
        let url = folder.appendingPathComponent("x_train_000000.bin")
        let tokens: [UInt16] = [1, 2, 3, 65535, 0, 7]
        try TokenShard.write(tokens: tokens, to: url)
        let bytes = try Data(contentsOf: url)
        XCTAssertEqual(bytes.count, 1024 + 12)
        let header = bytes.withUnsafeBytes { raw in
            (0..<3).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self) }
        }
        XCTAssertEqual(header, [20240520, 1, 6])
        let shard = try TokenShard(url: url, vocabularySize: 65536)
        XCTAssertEqual(try shard.tokens(start: 0, count: 6), [1, 2, 3, 65535, 0, 7])
    }

    func testMalformedShardsAreRejectedWithTheFileName() throws {
        let url = folder.appendingPathComponent("bad.bin")
        try writeRawShard(url, magic: 12345, count: 3, tokens: [1, 2, 3])
        XCTAssertThrowsError(try TokenShard(url: url, vocabularySize: 256)) {
            XCTAssert("\($0)".contains("bad.bin") && "\($0)".contains("magic"))
        }
        try writeRawShard(url, version: 7, count: 3, tokens: [1, 2, 3])
        XCTAssertThrowsError(try TokenShard(url: url, vocabularySize: 256)) { XCTAssert("\($0)".contains("version")) }
        try writeRawShard(url, count: 10, tokens: [1, 2, 3])
        XCTAssertThrowsError(try TokenShard(url: url, vocabularySize: 256)) { XCTAssert("\($0)".contains("truncated")) }
        try writeRawShard(url, count: 3, tokens: [1, 300, 3])
        XCTAssertThrowsError(try TokenShard(url: url, vocabularySize: 256)) {
            XCTAssert("\($0)".contains("token 300 at position 1"))
        }
        try Data([1, 2, 3]).write(to: url)
        XCTAssertThrowsError(try TokenShard(url: url, vocabularySize: 256)) { XCTAssert("\($0)".contains("header")) }
        XCTAssertThrowsError(try TokenShard(url: folder.appendingPathComponent("missing.bin"), vocabularySize: 256)) {
            XCTAssert("\($0)".contains("missing.bin"))
        }
    }

    func testSamplesAreWindowsThatNeverCrossShards() throws {
        try TokenShard.write(tokens: (0..<10).map { UInt16($0) }, to: folder.appendingPathComponent("a_train_0.bin"))
        try TokenShard.write(tokens: (100..<107).map { UInt16($0) }, to: folder.appendingPathComponent("a_train_1.bin"))
        let dataset = try TokenDataset.open(folder: folder, split: "train", sequenceLength: 3, vocabularySize: 256)
        XCTAssertEqual(dataset.sampleCount, 3 + 2)  // (10-1)/3 and (7-1)/3
        var inputs = [Int32](repeating: 0, count: 3), targets = [Int32](repeating: 0, count: 3)
        try dataset.copySample(2, inputs: &inputs, targets: &targets)
        XCTAssertEqual(inputs, [6, 7, 8]); XCTAssertEqual(targets, [7, 8, 9])
        try dataset.copySample(4, inputs: &inputs, targets: &targets)
        XCTAssertEqual(inputs, [103, 104, 105]); XCTAssertEqual(targets, [104, 105, 106])
    }

    func testEveryEpochVisitsEverySampleOnceInASeededOrder() throws {
        try TokenShard.write(
            tokens: (0..<200).map { UInt16($0 % 256) }, to: folder.appendingPathComponent("c_train_0.bin"))
        let dataset = try TokenDataset.open(folder: folder, split: "train", sequenceLength: 4, vocabularySize: 256)
        XCTAssertEqual(dataset.sampleCount, 49)
        let loader = DataLoader(dataset: dataset, batchSize: 5, seed: 99)
        var seen: [Int: [Int]] = [:]
        var position = LoaderPosition()
        for _ in 0..<(loader.batchesPerEpoch * 3) {
            let batch = try loader.batch(at: position)
            seen[batch.position.epoch, default: []] += batch.sampleIndices
            position = loader.position(after: position)
        }
        XCTAssertEqual(Set(seen.keys), [0, 1, 2])
        for (epoch, indices) in seen {
            XCTAssertEqual(indices.count, 45, "epoch \(epoch): 9 full batches, tail of 4 dropped")
            XCTAssertEqual(Set(indices).count, 45, "epoch \(epoch) repeated a sample")
            XCTAssertEqual(indices, Array(loader.order(epoch: epoch).prefix(45)))
        }
        let orders = (0..<4).map { loader.order(epoch: $0) }
        XCTAssertEqual(Set(orders).count, 4, "each epoch has its own order")
        XCTAssertEqual(
            loader.order(epoch: 1), DataLoader(dataset: dataset, batchSize: 5, seed: 99).order(epoch: 1),
            "order is a pure function of (seed, epoch)")
        XCTAssertEqual(
            position, LoaderPosition(epoch: 3, index: 0), "a finished epoch moves the position to the next one's start")
        XCTAssertEqual(
            loader.normalized(LoaderPosition(epoch: 1, index: 45)), LoaderPosition(epoch: 2, index: 0),
            "less than a batch left: the epoch is over")
        XCTAssertEqual(loader.normalized(LoaderPosition(epoch: 1, index: 44)), LoaderPosition(epoch: 1, index: 44))
    }

    func testSeekingGivesTheSameBatchesAsPlayingThrough() throws {
        try TokenShard.write(
            tokens: (0..<500).map { UInt16($0 % 256) }, to: folder.appendingPathComponent("d_train_0.bin"))
        let dataset = try TokenDataset.open(folder: folder, split: "train", sequenceLength: 4, vocabularySize: 256)
        let straight = DataLoader(dataset: dataset, batchSize: 6, seed: 5)
        var batches: [Batch] = []
        var positions: [LoaderPosition] = []
        var position = LoaderPosition()
        for _ in 0..<40 {
            positions.append(position); batches.append(try straight.batch(at: position));
            position = straight.position(after: position)
        }
        for k in [0, 7, 20, 33] {
            // A fresh loader (no cached order) at a saved position reads on as the first one did.
            let resumed = DataLoader(dataset: dataset, batchSize: 6, seed: 5)
            var at = positions[k]
            for i in k..<40 {
                let batch = try resumed.batch(at: at)
                at = resumed.position(after: at)
                XCTAssertEqual(batch.sampleIndices, batches[i].sampleIndices)
                XCTAssertEqual(batch.inputs, batches[i].inputs)
            }
        }
    }

    func testCommittedCorpusShardsAreTheBundledTextPrepared() throws {
        let text = TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt")
        let result = try DatasetPreparation.prepare(textFiles: [text], outputFolder: folder, name: "paradise_lost")
        for file in result.files {
            let committed = TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost")
                .appendingPathComponent(file.lastPathComponent)
            XCTAssertEqual(
                try Data(contentsOf: file), try Data(contentsOf: committed),
                "\(file.lastPathComponent) differs from baton prepare's output")
        }
        XCTAssertEqual(result.trainTokens, 418_564)
        XCTAssertEqual(result.valTokens, 46_508)
    }

    func testByteTokenizerRoundTrip() {
        let text = "Of Mans First Disobedience — é"
        XCTAssertEqual(ByteTokenizer.decode(ByteTokenizer.encode(text)), text)
        XCTAssertEqual(ByteTokenizer.encode("A"), [65])
    }
}
