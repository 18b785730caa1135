import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// `train --hellaswag` under mpirun: every rank scores its contiguous share of the examples and the
/// counts are summed, so 2 and 4 ranks (the same weights, bit for bit) write the figures one
/// process writes, and 3 ranks (4 examples: shares of 2, 2 and none) still finish and report them.
final class HellaSwagRanksTests: XCTestCase {
    static let library = TestPaths.repositoryRoot.appendingPathComponent(".build-mpi/libbaton_mpi.so")
    var folder: URL!
    var data: String!

    override func setUpWithError() throws {
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: "/usr/bin/mpirun"),
            "skipped: no mpirun (scripts/setup/install-deps installs OpenMPI)")
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: Self.library.path),
            "skipped: \(Self.library.path) not built (scripts/test builds it with scripts/setup/build-mpi)")
        folder = try TestPaths.temporaryFolder("hellaswag-ranks")
        data = try makeTinyShards(in: folder, train: 4000, validation: 500, name: "d")
    }

    override func tearDownWithError() throws { if let folder { try? FileManager.default.removeItem(at: folder) } }

    func flags(_ run: String, globalBatch: Int = 8) -> [String] {
        [
            "train", "--out", folder.appendingPathComponent(run).path, "--data", data, "--layers", "1", "--heads", "2",
            "--embd", "16", "--seq-len", "8", "--batch", "2", "--global-batch", "\(globalBatch)", "--steps", "6",
            "--eval-every", "0", "--eval-batches", "1", "--hellaswag",
            "Tests/BatonTests/Fixtures/hellaswag/short.jsonl",
            "--hellaswag-every", "2", "--device", "cpu", "--threads", "1",
        ]
    }

    func launch(ranks: Int, _ arguments: [String]) throws -> ProcessResult {
        let run = try runBatonJob(
            ranks: ranks, arguments, environment: ["BATON_MPI_LIBRARY": Self.library.path], scratch: folder,
            seconds: 120)
        XCTAssertFalse(run.timedOut, "timed out: \(ranks) ranks")
        XCTAssertEqual(run.result.status, 0, run.result.stderr)
        return run.result
    }

    func metrics(_ run: String) throws -> [StepMetrics] {
        try MetricsLog.read(folder.appendingPathComponent(run).appendingPathComponent("metrics.jsonl")).map {
            var m = $0
            m.tokensPerSecond = 0
            return m
        }
    }

    func testRanksSumTheirSharesIntoTheFiguresOfOneProcess() throws {
        try launch(ranks: 0, flags("w1"))
        let alone = try metrics("w1")
        XCTAssertEqual(alone.filter { $0.hellaswagAcc != nil }.map(\.step), [2, 4, 6])
        for ranks in [2, 4] {
            let result = try launch(ranks: ranks, flags("w\(ranks)"))
            XCTAssertEqual(
                result.stdout.components(separatedBy: "step 6: hellaswag: acc").count, 2,
                "rank 0 alone reports: \(result.stdout)")
            XCTAssertEqual(try metrics("w\(ranks)"), alone, "\(ranks) ranks")
        }
        try launch(ranks: 3, flags("w3", globalBatch: 6))
        let three = try metrics("w3").filter { $0.hellaswagAcc != nil }
        XCTAssertEqual(three.map(\.step), [2, 4, 6])
        for value in three.flatMap({ [$0.hellaswagAcc!, $0.hellaswagAccNorm!] }) {
            XCTAssert([0, 0.25, 0.5, 0.75, 1].contains(value), "\(value) is not a count of 4 examples")
        }
    }
}
