import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// `train --hellaswag` under mpirun: every rank scores its contiguous share of the examples and the
/// counts are summed, so 2 and 4 ranks (the same weights, bit for bit) write the figures one
/// process writes, and 3 ranks (4 examples: shares of 2, 2 and none) still finish and report them.
extension DataParallelTests {
    func hellaswagFlags(_ run: String, globalBatch: Int = 8) -> [String] {
        flags(run, globalBatch: globalBatch) + [
            "--hellaswag", "Tests/BatonTests/Fixtures/hellaswag/short.jsonl", "--hellaswag-every", "2",
        ]
    }

    func testHellaSwagRanksSumTheirSharesIntoTheFiguresOfOneProcess() throws {
        XCTAssertEqual(try launch(ranks: 0, hellaswagFlags("w1")).status, 0)
        let alone = try metrics("w1")
        XCTAssertEqual(alone.filter { $0.hellaswagAcc != nil }.map(\.step), [2, 4, 6])
        for ranks in [2, 4] {
            let result = try launch(ranks: ranks, hellaswagFlags("w\(ranks)"))
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssertEqual(
                result.stdout.components(separatedBy: "step 6: hellaswag: acc").count, 2,
                "rank 0 alone reports: \(result.stdout)")
            XCTAssertEqual(try metrics("w\(ranks)"), alone, "\(ranks) ranks")
        }
        let three = try launch(ranks: 3, hellaswagFlags("w3", globalBatch: 6))
        XCTAssertEqual(three.status, 0, three.stderr)
        let scored = try metrics("w3").filter { $0.hellaswagAcc != nil }
        XCTAssertEqual(scored.map(\.step), [2, 4, 6])
        for value in scored.flatMap({ [$0.hellaswagAcc!, $0.hellaswagAccNorm!] }) {
            XCTAssert([0, 0.25, 0.5, 0.75, 1].contains(value), "\(value) is not a count of 4 examples")
        }
    }
}
