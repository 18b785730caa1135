import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// ZeRO-1 (`--zero 1`): each rank keeps AdamW's moments for its slice of the parameters, updates
/// that slice and all-gathers the rest. With the exact reduce its checkpoints have the bytes of
/// one unsharded process at every power-of-two world size, and they load at any world size, with
/// or without --zero.
extension DataParallelTests {
    /// gpt2 and llama, fp32 and bf16, with and without gradient accumulation: --zero 1 at 2 and 4
    /// ranks gives one unsharded process's checkpoint and metrics.
    func testZeroOneGivesOneUnshardedProcesssBitsAtTwoAndFourRanks() throws {
        let llama = ["--arch", "llama", "--kv-heads", "1", "--attention-bias", "true"]
        let cases: [(name: String, extra: [String], globalBatch: Int)] = [
            ("gpt2", [], 8), ("gpt2-bf16", ["--precision", "bf16"], 8), ("llama", llama, 8),
            ("llama-bf16", llama + ["--precision", "bf16"], 8),
            // 16 sequences of 2: 4 micro-batches a rank at 2 ranks, 2 at 4 (GradientTree on each).
            ("gpt2-accum", [], 16),
        ]
        for (name, extra, globalBatch) in cases {
            let one = try launch(ranks: 0, flags("\(name)-1", globalBatch: globalBatch) + extra)
            XCTAssertEqual(one.status, 0, one.stderr)
            XCTAssertFalse(one.stdout.contains("optimizer:"), "without --zero 1 there is no optimizer line")
            for ranks in [2, 4] {
                let run = "\(name)-z\(ranks)"
                let result = try launch(ranks: ranks, flags(run, globalBatch: globalBatch) + extra + ["--zero", "1"])
                XCTAssertEqual(result.status, 0, result.stderr)
                let total = Int(result.stdout.firstMatch(of: /slice of \d+ parameters of (\d+),/)?.1 ?? "") ?? 0
                XCTAssertGreaterThan(total, 0, result.stdout)
                XCTAssert(
                    result.stdout.contains(
                        "(--zero 1, slice of \((total + ranks - 1) / ranks) parameters of \(total), \(ranks) ranks)"),
                    "\(run): the start-up line names rank 0's slice: \(result.stdout)")
                XCTAssert(try files(run) == files("\(name)-1"), "\(run): the checkpoint differs from one process's")
                XCTAssertEqual(try metrics(run), try metrics("\(name)-1"), run)
            }
        }
    }

    /// Checkpoints keep today's format: stopped with --zero 1 at 4 ranks and resumed at 2 without
    /// it, or stopped by one process and resumed at 4 with --zero 1, a run ends with the bytes of
    /// the uninterrupted one; a resume with no flag keeps the run's --zero.
    func testZeroOneResumesElasticallyBothWays() throws {
        XCTAssertEqual(try launch(ranks: 0, flags("straight")).status, 0)
        let cases: [(name: String, first: Int, firstZero: String, second: Int, secondFlags: [String])] = [
            ("z4to2", 4, "1", 2, ["--zero", "0"]), ("z1to4", 0, "0", 4, ["--zero", "1"]),
            ("z2to4", 2, "1", 4, []),
        ]
        for (name, first, firstZero, second, secondFlags) in cases {
            let stopped = try launch(ranks: first, flags(name) + ["--zero", firstZero, "--stop-at", "3"])
            XCTAssertEqual(stopped.status, 0, stopped.stderr)
            let resumed = try launch(ranks: second, flags(name) + ["--resume", "auto"] + secondFlags)
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssertFalse(resumed.stdout.contains("changed:"), "\(name): --zero changes silently: \(resumed.stdout)")
            let zeroAfter = secondFlags.last ?? firstZero
            XCTAssertEqual(resumed.stdout.contains("optimizer:"), zeroAfter == "1", "\(name): \(resumed.stdout)")
            XCTAssert(try files(name) == files("straight"), "\(name): the final checkpoint differs")
            XCTAssertEqual(try metrics(name), try metrics("straight"), name)
            // Every checkpoint written with the moments gathered from slices verifies.
            let store = CheckpointStore(runFolder: folder.appendingPathComponent(name))
            for step in store.steps() { XCTAssertNoThrow(try CheckpointStore.verify(store.url(step: step))) }
        }
    }

    /// --reduce fast with --zero 1 reduce-scatters the gradient and takes the norm from the slices:
    /// within float rounding of the unsharded fast run at 2 and 4 ranks.
    func testZeroOneWithReduceFastIsCloseToTheUnshardedRun() throws {
        for ranks in [2, 4] {
            let plain = try launch(ranks: ranks, flags("fast\(ranks)") + ["--reduce", "fast"])
            XCTAssertEqual(plain.status, 0, plain.stderr)
            let zero = try launch(ranks: ranks, flags("fastz\(ranks)") + ["--reduce", "fast", "--zero", "1"])
            XCTAssertEqual(zero.status, 0, zero.stderr)
            XCTAssert(zero.stdout.contains("by MPI's all-reduce"), zero.stdout)
            let expected = try metrics("fast\(ranks)"), actual = try metrics("fastz\(ranks)")
            XCTAssertEqual(actual.count, expected.count)
            assertClose(actual.map(\.loss), expected.map(\.loss), rtol: 1e-4, "losses at \(ranks) ranks")
            assertClose(actual.map(\.gradNorm), expected.map(\.gradNorm), rtol: 1e-4, "grad norms at \(ranks) ranks")
        }
    }

    /// The torture harness with --zero 1 on a 2-rank job: 3 SIGKILLs of random ranks, then the end
    /// compared byte for byte with one uninterrupted unsharded process.
    func testThreeKillsOfAZeroOneJobLoseNothingAndEndBitwiseEqual() throws {
        let result = try runBaton(
            ["torture", "--kills", "3", "--seed", "5", "--ranks", "2", "--zero", "1"],
            environment: ["BATON_MPI_LIBRARY": DataParallelTests.library.path])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        for line in ["2 ranks under mpirun", "--zero 1 (the reference unsharded)", "kills: 3", "mismatches: 0"] {
            XCTAssert(result.stdout.contains(line), "'\(line)' missing from:\n\(result.stdout)")
        }
    }

    /// A save that fails on rank 0 before the ranks write their slices (a full disk) stops every
    /// rank, or with --on-save-error retry every rank trains on and the next save, written by all
    /// of them, verifies.
    func testAZeroOneSaveErrorStopsEveryRankOrRetriesTogether() throws {
        let stop = try launch(
            ranks: 2, flags("zfull") + ["--zero", "1", "--save-every", "2", "--inject-fault", "disk-full:4"])
        XCTAssertNotEqual(stop.status, 0)
        XCTAssert(stop.stderr.contains("no space left on device"), stop.stderr)
        let store = CheckpointStore(runFolder: folder.appendingPathComponent("zfull"))
        XCTAssertEqual(store.steps(), [2])
        XCTAssertNoThrow(try CheckpointStore.verify(store.url(step: 2)))
        let retry = try launch(
            ranks: 2,
            flags("zretry") + [
                "--zero", "1", "--save-every", "2", "--inject-fault", "disk-full:4", "--on-save-error", "retry",
            ])
        XCTAssertEqual(retry.status, 0, retry.stderr)
        let retried = CheckpointStore(runFolder: folder.appendingPathComponent("zretry"))
        XCTAssertEqual(retried.steps(), [2, 6])
        XCTAssertNoThrow(try CheckpointStore.verify(retried.url(step: 6)))
        XCTAssertEqual(try launch(ranks: 0, flags("plain")).status, 0)
        XCTAssert(try files("zretry") == files("plain"), "the run that retried its save ends with one process's bytes")
    }
}
