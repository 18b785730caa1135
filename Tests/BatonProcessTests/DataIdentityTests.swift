import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The data fingerprint in state.json holds each shard's token CRC: a shard re-prepared with the
/// same name and size but other tokens is not the data the run trained on.
final class DataIdentityTests: TinyRunTestCase {
    var flags: [String] {
        tinyModel + ["--batch", "4", "--eval-every", "0", "--log-every", "100", "--device", "cpu", "--threads", "2"]
    }

    var trainShard: URL { URL(fileURLWithPath: data).appendingPathComponent("t_train_000000.bin") }

    /// Rewrites the training shard with other tokens, keeping its name, size and token count.
    func reprepareTrainShard() throws {
        let text = try Data(contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt"))
        let size = try FileManager.default.attributesOfItem(atPath: trainShard.path)[.size] as! Int
        try TokenShard.write(tokens: text.dropFirst(1000).prefix(385).map { UInt16($0) }, to: trainShard)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: trainShard.path)[.size] as? Int, size)
    }

    func train(_ run: URL, _ extra: [String]) throws -> ProcessResult {
        try runBaton(["train", "--out", run.path] + extra + flags)
    }

    func testOtherTokensUnderTheSameNameAndSizeAreRefused() throws {
        let run = folder.appendingPathComponent("run")
        XCTAssertEqual(try train(run, ["--steps", "4"]).status, 0)
        // state.json records the tokens' CRC, the one the shard computes while it is checked.
        let stateURL = CheckpointStore(runFolder: run).url(step: 4).appendingPathComponent("state.json")
        let state = try CheckpointState.decode(try Data(contentsOf: stateURL), path: stateURL.path)
        let shard = try TokenShard(url: trainShard, vocabularySize: 256)
        XCTAssertEqual(state.data.train.first?.crc32c, TensorFile.hex(shard.contentDigest))

        try reprepareTrainShard()
        let refused = try train(run, ["--resume", "auto", "--steps", "6"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssert(
            refused.stderr.contains("t_train_000000.bin") && refused.stderr.contains("other tokens")
                && refused.stderr.contains("--allow-data-change"), refused.stderr)
        XCTAssertEqual(CheckpointStore(runFolder: run).steps(), [4], "nothing was trained")

        let allowed = try train(run, ["--resume", "auto", "--steps", "6", "--allow-data-change"])
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        XCTAssert(
            (allowed.stdout + allowed.stderr).contains(
                "resuming on changed data (train shard t_train_000000.bin holds other tokens"),
            allowed.stdout + allowed.stderr)
    }

    /// A checkpoint from before the CRC was recorded still loads and resumes on name, size and
    /// count alone (as it always did).
    func testACheckpointWithoutShardCRCsResumesOnTheOldComparison() throws {
        let run = folder.appendingPathComponent("old")
        XCTAssertEqual(try train(run, ["--steps", "4"]).status, 0)
        let stateURL = CheckpointStore(runFolder: run).url(step: 4).appendingPathComponent("state.json")
        var json = try JSONSerialization.jsonObject(with: try Data(contentsOf: stateURL)) as! [String: Any]
        var fingerprint = json["data"] as! [String: Any]
        for split in ["train", "val"] {
            fingerprint[split] = (fingerprint[split] as! [[String: Any]]).map { shard in
                XCTAssertNotNil(shard["crc32c"], "today's checkpoints record the CRC")
                return shard.filter { $0.key != "crc32c" }
            }
        }
        json["data"] = fingerprint
        try JSONSerialization.data(withJSONObject: json).write(to: stateURL)
        let state = try CheckpointState.decode(try Data(contentsOf: stateURL), path: stateURL.path)
        XCTAssertNil(state.data.train.first?.crc32c)

        try reprepareTrainShard()
        let resumed = try train(run, ["--resume", "auto", "--steps", "6"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertFalse((resumed.stdout + resumed.stderr).contains("changed data"), resumed.stdout)
        // A changed size is still refused.
        try TokenShard.write(tokens: [UInt16](repeating: 65, count: 400), to: trainShard)
        let refused = try train(run, ["--resume", "step-4", "--steps", "6"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssert(
            refused.stderr.contains(
                "train shards were t_train_000000.bin (385 tokens), now t_train_000000.bin (400 tokens)"),
            refused.stderr)
    }
}
