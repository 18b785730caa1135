import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport
@testable import baton_fuzz

/// scripts/checks/fuzz seeds the safetensors target with a checkpoint it trains; the model that target
/// loads into must have the seed's shape, or even the unmutated seed is rejected and the fuzzer
/// almost never reaches tensor loading.
final class FuzzSeedTests: XCTestCase {
    func testTheFuzzSeedLoadsIntoTheFuzzModel() throws {
        let script = try String(
            contentsOf: TestPaths.repositoryRoot.appendingPathComponent("scripts/checks/fuzz"), encoding: .utf8)
        XCTAssert(
            script.contains(FuzzTargets.seedTrainFlags),
            "scripts/checks/fuzz must train its seed with \(FuzzTargets.seedTrainFlags)")
        let folder = try TestPaths.temporaryFolder("fuzz-seed")
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = try makeTinyShards(in: folder), run = folder.appendingPathComponent("run").path
        let result = try runBaton(
            ["train", "--data", data, "--out", run, "--batch", "2", "--steps", "2", "--device", "cpu"]
                + FuzzTargets.seedTrainFlags.split(separator: " ").map(String.init))
        XCTAssertEqual(result.status, 0, result.stderr)
        let seed = try Data(
            contentsOf: CheckpointStore(runFolder: URL(fileURLWithPath: run)).url(step: 2).appendingPathComponent(
                "model.safetensors"))
        let loadedBefore = FuzzTargets.loaded
        XCTAssert(FuzzTargets.run(target: "safetensors", input: seed, scratch: folder), "the seed must read")
        XCTAssertEqual(FuzzTargets.loaded, loadedBefore + 1, "the seed must load into the fuzz model")
    }
}
