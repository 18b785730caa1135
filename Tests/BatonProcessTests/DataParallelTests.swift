import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// Data-parallel training under OpenMPI's mpirun (tiny models, 1 thread a rank): the same global
/// batch gives the same bits at world sizes 1, 2, 4 and 8, and a run stopped at one world size and
/// resumed at another ends with the bytes of an uninterrupted one.
final class DataParallelTests: XCTestCase {
    static let library = TestPaths.repositoryRoot.appendingPathComponent(".build-mpi/libbaton_mpi.so")
    var folder: URL!
    var data: String!

    override func setUpWithError() throws {
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: "/usr/bin/mpirun"),
            "skipped: no mpirun (scripts/setup/install-deps installs OpenMPI)")
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: DataParallelTests.library.path),
            "skipped: \(DataParallelTests.library.path) not built (scripts/test builds it with scripts/setup/build-mpi)"
        )
        folder = try TestPaths.temporaryFolder("dp")
        data = try makeTinyShards(in: folder, train: 4000, validation: 500, name: "d")
    }

    override func tearDownWithError() throws { if let folder { try? FileManager.default.removeItem(at: folder) } }

    func flags(_ run: String, globalBatch: Int = 8, batch: Int = 2) -> [String] {
        [
            "train", "--out", folder.appendingPathComponent(run).path, "--data", data, "--layers", "1", "--heads", "2",
            "--embd", "16",
            "--seq-len", "8", "--batch", "\(batch)", "--global-batch", "\(globalBatch)", "--steps", "6", "--eval-every",
            "3", "--eval-batches", "2",
            "--device", "cpu", "--threads", "1",
        ]
    }

    /// `baton` under `mpirun -np ranks` (or alone for 0), stopped if it outlives `seconds`.
    @discardableResult
    func launch(
        ranks: Int, _ arguments: [String], library: String = DataParallelTests.library.path, seconds: Double = 120,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> ProcessResult {
        let run = try runBatonJob(
            ranks: ranks, arguments, environment: ["BATON_MPI_LIBRARY": library], scratch: folder, seconds: seconds)
        if run.timedOut { XCTFail("timed out after \(seconds) s: \(arguments.prefix(3))", file: file, line: line) }
        return run.result
    }

    func files(_ run: String, step: Int = 6) throws -> [Data] {
        let checkpoint = CheckpointStore(runFolder: folder.appendingPathComponent(run)).url(step: step)
        return try ["model.safetensors", "optimizer.safetensors"].map {
            try Data(contentsOf: checkpoint.appendingPathComponent($0))
        }
    }

    func metrics(_ run: String) throws -> [StepMetrics] {
        try MetricsLog.read(folder.appendingPathComponent(run).appendingPathComponent("metrics.jsonl")).map {
            var m = $0; m.tokensPerSecond = 0; return m
        }
    }

    /// The README's set-up (scripts/build, which both of its commands run) puts the communicator
    /// beside the release binary, where every rank finds it with no environment variable.
    func testMpirunFindsTheCommunicatorBesideTheReleaseBinaryWithNoVariable() throws {
        let release = TestPaths.repositoryRoot.appendingPathComponent(".build/release/baton")
        let beside = release.deletingLastPathComponent().appendingPathComponent("libbaton_mpi.so")
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: release.path) && FileManager.default.fileExists(atPath: beside.path),
            "skipped: \(beside.path) not built (scripts/build, which scripts/test runs, puts it there)")
        let run = folder.appendingPathComponent("readme").path
        let job = try runBatonJob(
            ranks: 2, ["train", "--steps", "3", "--out", run, "--threads", "1", "--device", "cpu"], environment: [:],
            scratch: folder, executable: release, removing: ["BATON_MPI_LIBRARY"])
        XCTAssertFalse(job.timedOut)
        XCTAssertEqual(job.result.status, 0, job.result.stderr)
        XCTAssert(
            job.result.stdout.contains("ranks: 2") && job.result.stdout.contains("done: 3 steps"), job.result.stdout)
    }

    /// The recorded --reduce decides how ranks sum: a run started with --reduce fast and resumed
    /// without the flag still sums by MPI's all-reduce (the pairwise tree is the default).
    func testReduceFastIsKeptOnResume() throws {
        let run = folder.appendingPathComponent("fast").path
        let first = try launch(ranks: 2, flags("fast") + ["--reduce", "fast", "--stop-at", "3"])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssert(first.stdout.contains("gradients summed by MPI's all-reduce"), first.stdout)
        let resumed = try launch(
            ranks: 2, ["train", "--out", run, "--resume", "auto", "--device", "cpu", "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssert(
            resumed.stdout.contains("gradients summed by MPI's all-reduce"),
            "the resumed run must keep --reduce fast: " + resumed.stdout)
        XCTAssertFalse(resumed.stdout.contains("changed:"), resumed.stdout)
        let exact = try launch(
            ranks: 2,
            [
                "train", "--out", run, "--resume", "auto", "--steps", "8", "--reduce", "exact",
                "--device", "cpu", "--threads", "1",
            ])
        XCTAssertEqual(exact.status, 0, exact.stderr)
        XCTAssert(
            exact.stdout.contains("reduce changed: fast -> exact") && exact.stdout.contains("gradients summed exactly"),
            exact.stdout)
    }

    func testWorldSizesOneTwoFourAndEightGiveTheSameBits() throws {
        XCTAssertEqual(try launch(ranks: 0, flags("w1")).status, 0)
        for ranks in [2, 4] {
            let result = try launch(ranks: ranks, flags("w\(ranks)"))
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssert(result.stdout.contains("ranks: \(ranks), \(4 / ranks) micro-batch"), result.stdout)
            XCTAssertEqual(
                result.stdout.components(separatedBy: "done: 6 steps").count, 2,
                "rank 0 alone reports: \(result.stdout)")
            XCTAssert(
                try files("w\(ranks)") == files("w1"), "world size \(ranks): the checkpoint differs from one process's")
            XCTAssertEqual(try metrics("w\(ranks)"), try metrics("w1"))
        }
        // Eight ranks, one micro-batch of 1 each, against one process summing the same 8 in turn
        // (micro-batches of 1 sum otherwise than of 2, so w1 is not the reference).
        XCTAssertEqual(try launch(ranks: 0, flags("b1", batch: 1)).status, 0)
        let eight = try launch(ranks: 8, flags("w8", batch: 1), seconds: 240)
        XCTAssertEqual(eight.status, 0, eight.stderr)
        XCTAssert(eight.stdout.contains("ranks: 8, 1 micro-batch"), eight.stdout)
        XCTAssert(try files("w8") == files("b1"), "world size 8: the checkpoint differs from one process's")
        XCTAssertEqual(try metrics("w8"), try metrics("b1"))
        // Three ranks (not a power of two): MPI's all-reduce, equal within float rounding.
        XCTAssertEqual(try launch(ranks: 0, flags("g6", globalBatch: 6)).status, 0)
        let three = try launch(ranks: 3, flags("w3", globalBatch: 6))
        XCTAssertEqual(three.status, 0, three.stderr)
        XCTAssert(three.stdout.contains("by MPI's all-reduce"), three.stdout)
        assertClose(
            try metrics("w3").map(\.loss), try metrics("g6").map(\.loss), rtol: 1e-4,
            "losses at 3 ranks against one process")
    }

    /// The Llama family (grouped-query attention, q/k/v biases) at world sizes 1, 2 and 4: the same bits.
    func testALlamaRunGivesTheSameBitsAtWorldSizesOneTwoAndFour() throws {
        let llama = ["--arch", "llama", "--kv-heads", "1", "--attention-bias", "true"]
        XCTAssertEqual(try launch(ranks: 0, flags("l1") + llama).status, 0)
        for ranks in [2, 4] {
            let result = try launch(ranks: ranks, flags("l\(ranks)") + llama)
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssert(try files("l\(ranks)") == files("l1"), "llama, world size \(ranks): the checkpoint differs")
            XCTAssertEqual(try metrics("l\(ranks)"), try metrics("l1"))
        }
        // Elastic: stopped at 4 ranks, resumed at 2, the one process's bytes.
        XCTAssertEqual(try launch(ranks: 4, flags("l4to2") + llama + ["--stop-at", "3"]).status, 0)
        let resumed = try launch(ranks: 2, flags("l4to2") + ["--resume", "auto"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssert(try files("l4to2") == files("l1"), "llama, 4 ranks then 2: the checkpoint differs")
    }

    /// Supervised fine-tuning (masked shards): the step's loss is over the counted targets of all
    /// ranks' micro-batches, so every rank learns the count first; the bits are one process's.
    func testAnSFTRunGivesTheSameBitsAtWorldSizesOneTwoAndFour() throws {
        let sft = folder.appendingPathComponent("sft").path
        try runBatonExpectingSuccess([
            "prepare", "--sft", TestPaths.repositoryRoot.appendingPathComponent("data/sft-example.jsonl").path,
            "--tokenizer", TestPaths.fixtures.appendingPathComponent("tokenizer-json/qwen2").path, "--out", sft,
        ])
        func sftFlags(_ run: String) -> [String] {
            var arguments = flags(run)
            arguments[arguments.firstIndex(of: "--data")! + 1] = sft
            return arguments
        }
        XCTAssertEqual(try launch(ranks: 0, sftFlags("s1")).status, 0)
        for ranks in [2, 4] {
            let result = try launch(ranks: ranks, sftFlags("s\(ranks)"))
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssert(try files("s\(ranks)") == files("s1"), "SFT, world size \(ranks): the checkpoint differs")
            XCTAssertEqual(try metrics("s\(ranks)"), try metrics("s1"))
        }
        // And with ZeRO-1's sharded optimizer.
        let zero = try launch(ranks: 2, sftFlags("z2") + ["--zero", "1"])
        XCTAssertEqual(zero.status, 0, zero.stderr)
        XCTAssert(try files("z2") == files("s1"), "SFT, --zero 1 at 2 ranks: the checkpoint differs")
        XCTAssertEqual(try metrics("z2"), try metrics("s1"))
    }

    func testStoppedAtOneWorldSizeAndResumedAtAnotherEndsTheSame() throws {
        XCTAssertEqual(try launch(ranks: 0, flags("straight")).status, 0)
        for (name, first, second, stop) in [("4to2", 4, 2, 3), ("2to1", 2, 0, 2), ("1to4", 0, 4, 4)] {
            let stopped = try launch(ranks: first, flags(name) + ["--stop-at", "\(stop)"])
            XCTAssertEqual(stopped.status, 0, stopped.stderr)
            let resumed = try launch(ranks: second, flags(name) + ["--resume", "auto"])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssert(
                try files(name) == files("straight"),
                "\(name): the final checkpoint differs from the uninterrupted run's")
            XCTAssertEqual(try metrics(name), try metrics("straight"), name)
        }
        // Another global batch on resume is refused unless asked for.
        let changed = try launch(ranks: 0, flags("straight", globalBatch: 4) + ["--resume", "auto", "--steps", "8"])
        XCTAssertEqual(changed.status, 1)
        XCTAssert(changed.stderr.contains("--global-batch 4 differs from the run's 8"), changed.stderr)
    }

    func testAMissingCommunicatorIsAOneLineErrorFromEveryRank() throws {
        let result = try launch(ranks: 2, flags("nolib"), library: "/nonexistent/libbaton_mpi.so")
        XCTAssertNotEqual(result.status, 0)
        let lines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("baton: error:") }
        XCTAssertEqual(lines.count, 2, result.stderr)
        XCTAssert(
            lines.allSatisfy {
                $0.contains(
                    "launched by mpirun (2 ranks), but there is no MPI communicator library at "
                        + "/nonexistent/libbaton_mpi.so"
                )
            },
            result.stderr)
    }
}

extension DataParallelTests {
    /// The sample ledger of a 2-rank job stopped twice and resumed (once alone) is the ledger of one
    /// uninterrupted process: every sample once per epoch, none replayed or skipped.
    func testTheSampleLedgerAcrossRanksAndStopsIsTheUninterruptedOne() throws {
        let straightLedger = folder.appendingPathComponent("straight.jsonl").path
        XCTAssertEqual(try launch(ranks: 0, flags("straight") + ["--sample-ledger", straightLedger]).status, 0)
        let ledger = folder.appendingPathComponent("ranks.jsonl").path
        for (ranks, extra) in [
            (2, ["--stop-at", "2"]), (0, ["--resume", "auto", "--stop-at", "4"]), (2, ["--resume", "auto"]),
        ] {
            let result = try launch(ranks: ranks, flags("ranks") + ["--sample-ledger", ledger] + extra)
            XCTAssertEqual(result.status, 0, result.stderr)
        }
        XCTAssertEqual(
            try String(contentsOfFile: ledger, encoding: .utf8),
            try String(contentsOfFile: straightLedger, encoding: .utf8))
        XCTAssertEqual(
            try CheckpointStore.verify(CheckpointStore(runFolder: folder.appendingPathComponent("ranks")).url(step: 6))
                .worldSize, 2)
    }

    /// SIGKILL of rank 1 ends the job (mpirun stops every rank; nothing hangs), and --resume auto
    /// continues from the last complete checkpoint to the bytes of an uninterrupted run.
    func testKillingOneRankEndsTheJobAndAResumeEndsTheSame() throws {
        XCTAssertEqual(try launch(ranks: 0, longFlags("straight") + ["--save-every", "100"]).status, 0)
        let run = folder.appendingPathComponent("killed")
        let job = try startJob(
            ["-np", "2", "-x", "BATON_MPI_LIBRARY", TestPaths.batonExecutable.path] + longFlags("killed") + [
                "--save-every", "100",
            ])
        // Wait for a checkpoint, then kill rank 1 (found by its launcher-given rank).
        let store = CheckpointStore(runFolder: run)
        for _ in 0..<600 where store.steps().isEmpty { usleep(20_000) }
        XCTAssertFalse(store.steps().isEmpty, "the job should have saved a checkpoint")
        let rankOne = try XCTUnwrap(
            processes(withEnvironment: "OMPI_COMM_WORLD_RANK=1", commandContaining: run.path).first)
        kill(rankOne, SIGKILL)
        XCTAssert(waitForEnd(job), "the job must end when a rank dies")
        XCTAssertNotEqual(job.terminationStatus, 0)
        let resumed = try launch(ranks: 2, longFlags("killed") + ["--save-every", "100", "--resume", "auto"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssert(
            try files("killed", step: 3000) == files("straight", step: 3000),
            "the resumed job's end differs from the uninterrupted run's")
    }

    /// A full disk while rank 0 saves stops every rank, with the error; earlier checkpoints stay.
    /// With --on-save-error retry every rank goes on together.
    func testASaveErrorOnRankZeroStopsEveryRankOrRetriesTogether() throws {
        let stop = try launch(ranks: 2, flags("full") + ["--save-every", "2", "--inject-fault", "disk-full:4"])
        XCTAssertNotEqual(stop.status, 0)
        XCTAssert(stop.stderr.contains("no space left on device"), stop.stderr)
        XCTAssert(
            stop.stderr.contains("rank 0:") || stop.stderr.components(separatedBy: "no space left").count > 2,
            stop.stderr)
        let store = CheckpointStore(runFolder: folder.appendingPathComponent("full"))
        XCTAssertEqual(store.steps(), [2])
        XCTAssertNoThrow(try CheckpointStore.verify(store.url(step: 2)))
        let retry = try launch(
            ranks: 2,
            flags("retry") + ["--save-every", "2", "--inject-fault", "disk-full:4", "--on-save-error", "retry"])
        XCTAssertEqual(retry.status, 0, retry.stderr)
        XCTAssertEqual(CheckpointStore(runFolder: folder.appendingPathComponent("retry")).steps(), [2, 6])
    }

    /// This run's flags for 3000 steps: long enough to be acted on well before its end.
    func longFlags(_ run: String) -> [String] {
        var long = flags(run)
        long[long.firstIndex(of: "--steps")! + 1] = "3000"
        return long
    }

    /// mpirun with `arguments`, started in the background, its output to `output` (else dropped)
    /// and its errors to `errors`.
    func startJob(_ arguments: [String], output: URL? = nil, errors: URL? = nil) throws -> Process {
        let job = Process()
        job.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
        job.arguments = ["--allow-run-as-root", "--oversubscribe"] + arguments
        job.environment = ProcessInfo.processInfo.environment.merging([
            "BATON_MPI_LIBRARY": DataParallelTests.library.path
        ]) { $1 }
        for (url, set) in [(output, { job.standardOutput = $0 }), (errors, { job.standardError = $0 })]
            as [(URL?, (Any) -> Void)]
        {
            if let url {
                FileManager.default.createFile(atPath: url.path, contents: nil)
                set(try FileHandle(forWritingTo: url))
            } else {
                set(FileHandle.nullDevice)
            }
        }
        try job.run()
        return job
    }

    /// Waits up to `seconds` for `job` to end; false (and the job stopped) if it did not.
    func waitForEnd(_ job: Process, seconds: Double = 60) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while job.isRunning && Date() < deadline { usleep(20_000) }
        let ended = !job.isRunning
        if !ended { job.terminate() }
        job.waitUntilExit()
        return ended
    }

    /// Processes whose environment holds `entry` and whose command line mentions `text`.
    func processes(withEnvironment entry: String, commandContaining text: String) -> [pid_t] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap { name -> pid_t? in
            guard let pid = pid_t(name),
                let environment = FileManager.default.contents(atPath: "/proc/\(name)/environ"),
                let command = FileManager.default.contents(atPath: "/proc/\(name)/cmdline")
            else { return nil }
            let variables = environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return variables.contains(entry) && String(decoding: command, as: UTF8.self).contains(text) ? pid : nil
        }
    }
}

extension DataParallelTests {
    /// SIGUSR1 to mpirun (which forwards it to every rank and keeps the job): every rank stops after
    /// the same step, one checkpoint is written, the job exits 0 saying once how to continue, and
    /// the resumed job ends with the uninterrupted run's bytes.
    func testSIGUSR1ToMpirunStopsEveryRankWithOneCheckpoint() throws {
        XCTAssertEqual(try launch(ranks: 0, longFlags("straight") + ["--save-every", "0"]).status, 0)
        let run = folder.appendingPathComponent("stopped"), output = folder.appendingPathComponent("stopped.out")
        let job = try startJob(
            ["-np", "2", "-x", "BATON_MPI_LIBRARY", TestPaths.batonExecutable.path] + longFlags("stopped") + [
                "--save-every", "0",
            ],
            output: output)
        let metrics = run.appendingPathComponent("metrics.jsonl")
        for _ in 0..<600 where ((try? Data(contentsOf: metrics))?.count ?? 0) < 2000 { usleep(10_000) }
        kill(job.processIdentifier, SIGUSR1)
        XCTAssert(waitForEnd(job), "the job did not stop")
        XCTAssertEqual(job.terminationStatus, 0)
        let text = try String(contentsOf: output, encoding: .utf8)
        XCTAssertEqual(text.components(separatedBy: "stopped by SIGUSR1 after step").count, 2, text)
        let steps = CheckpointStore(runFolder: run).steps()
        XCTAssertEqual(steps.count, 1)
        XCTAssertLessThan(steps[0], 3000)
        let resumed = try launch(ranks: 2, longFlags("stopped") + ["--save-every", "0", "--resume", "auto"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssert(
            try files("stopped", step: 3000) == files("straight", step: 3000),
            "the resumed job's end differs from the uninterrupted run's")
    }
}

extension DataParallelTests {
    /// Ranks started with different flags (mpirun's `A : B` form) are refused by every rank in one
    /// line before anything is written.
    func testRanksStartedWithDifferentFlagsAreRefused() throws {
        let common = flags("mismatch"), errors = folder.appendingPathComponent("mismatch.err")
        let job = try startJob(
            ["-x", "BATON_MPI_LIBRARY", "-np", "1", TestPaths.batonExecutable.path] + common + [
                "--lr", "1e-3", ":",
                "-np", "1", TestPaths.batonExecutable.path,
            ] + common + ["--lr", "2e-3"], errors: errors)
        XCTAssert(waitForEnd(job), "the job did not end")
        XCTAssertNotEqual(job.terminationStatus, 0)
        let lines = try String(contentsOf: errors, encoding: .utf8).split(separator: "\n").filter {
            $0.hasPrefix("baton: error:")
        }
        XCTAssertEqual(lines.count, 2, lines.joined(separator: "\n"))
        XCTAssert(
            lines.allSatisfy { $0.contains("was started with other arguments than rank 0") },
            lines.joined(separator: "\n"))
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: folder.appendingPathComponent("mismatch").path), "nothing is written"
        )
    }
}

extension DataParallelTests {
    /// The torture harness on a 2-rank job, short: 3 SIGKILLs of random ranks, then the end
    /// compared byte for byte with one uninterrupted process at the same global batch.
    func testThreeKillsOfRandomRanksLoseNothingAndEndBitwiseEqual() throws {
        let result = try runBaton(
            ["torture", "--kills", "3", "--seed", "7", "--ranks", "2"],
            environment: ["BATON_MPI_LIBRARY": DataParallelTests.library.path])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        for line in ["2 ranks under mpirun", "kills: 3", "mismatches: 0", "checkpoints lost: 0"] {
            XCTAssert(result.stdout.contains(line), "'\(line)' missing from:\n\(result.stdout)")
        }
    }
}

extension DataParallelTests {
    /// A rank that stops answering without exiting (a hung GPU, a stopped process) does not hang
    /// the job: after --collective-timeout rank 0 names it in one line and the job ends.
    func testAStalledRankEndsTheJobWithAnErrorNamingIt() throws {
        let started = Date()
        let result = try launch(
            ranks: 2,
            flags("stalled") + ["--save-every", "2", "--collective-timeout", "3", "--inject-fault", "stall-rank:3:1"],
            seconds: 60)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertLessThan(Date().timeIntervalSince(started), 40, "the job must end soon after the timeout")
        XCTAssert(
            result.stderr.contains(
                "baton: error: rank 0: allgather failed: allgather: rank 1 did not answer within 3 s (lost or stuck)"),
            result.stderr)
        // The checkpoint the job had saved before the stall is still good.
        let store = CheckpointStore(runFolder: folder.appendingPathComponent("stalled"))
        XCTAssertEqual(store.steps(), [2])
        XCTAssertNoThrow(try CheckpointStore.verify(store.url(step: 2)))
    }

    /// Ranks that see different files at the same --data path (as two nodes can) are refused by
    /// every rank. Rank 1 runs in its own mount namespace with other shards bound over the path.
    func testRanksThatReadDifferentDataAreRefused() throws {
        try XCTSkipUnless(
            shell("unshare -m true 2>/dev/null") == 0,
            "skipped: unshare -m needs root (CAP_SYS_ADMIN) to show rank 1 other files")
        let text = try Data(contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt"))
        let other = folder.appendingPathComponent("other-shards")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        try TokenShard.write(
            tokens: text.dropFirst(100).prefix(4000).map { UInt16($0) },
            to: other.appendingPathComponent("d_train_000000.bin"))
        try TokenShard.write(
            tokens: text.dropFirst(4000).prefix(500).map { UInt16($0) },
            to: other.appendingPathComponent("d_val_000000.bin"))
        let common = flags("datamismatch"), errors = folder.appendingPathComponent("datamismatch.err")
        let quoted = ([TestPaths.batonExecutable.path] + common).map { "'\($0)'" }.joined(separator: " ")
        let job = try startJob(
            ["-x", "BATON_MPI_LIBRARY", "-np", "1", TestPaths.batonExecutable.path] + common + [
                ":",
                "-np", "1", "unshare", "-m", "sh", "-c", "mount --bind '\(other.path)' '\(data!)' && exec \(quoted)",
            ], errors: errors)
        XCTAssert(waitForEnd(job), "the job did not end")
        XCTAssertNotEqual(job.terminationStatus, 0)
        let errorText = try String(contentsOf: errors, encoding: .utf8)
        let lines = errorText.split(separator: "\n").filter { $0.hasPrefix("baton: error:") }
        XCTAssertFalse(lines.isEmpty, errorText)
        XCTAssert(
            lines.allSatisfy { $0.contains("disagrees with rank 0 on the config, the data or the checkpoint") },
            lines.joined(separator: "\n"))
    }
}

extension DataParallelTests {
    /// SIGTERM to the ranks themselves — all of them, as a batch scheduler preempting the job does
    /// (Slurm's scancel signals every task), or just one — stops every rank after the same step:
    /// one checkpoint, exit 0, the resume command printed once, and the resumed job ends with the
    /// uninterrupted run's bytes. (SIGTERM to mpirun itself cannot do this with OpenMPI 4.1: see
    /// docs/parallel.md; SIGUSR1 to mpirun does.)
    func testSIGTERMToTheRanksStopsEveryRankWithOneCheckpoint() throws {
        XCTAssertEqual(try launch(ranks: 0, longFlags("straight") + ["--save-every", "0"]).status, 0)
        for (name, targets) in [("all", ["0", "1"]), ("one", ["1"])] {
            let run = folder.appendingPathComponent(name), output = folder.appendingPathComponent("\(name).out")
            let job = try startJob(
                ["-np", "2", "-x", "BATON_MPI_LIBRARY", TestPaths.batonExecutable.path] + longFlags(name) + [
                    "--save-every", "0",
                ],
                output: output)
            let metrics = run.appendingPathComponent("metrics.jsonl")
            for _ in 0..<600 where ((try? Data(contentsOf: metrics))?.count ?? 0) < 2000 { usleep(10_000) }
            for rank in targets {
                let pid = try XCTUnwrap(
                    processes(withEnvironment: "OMPI_COMM_WORLD_RANK=\(rank)", commandContaining: run.path).first,
                    "rank \(rank)")
                kill(pid, SIGTERM)
            }
            XCTAssert(waitForEnd(job), "\(name): the job did not stop")
            XCTAssertEqual(job.terminationStatus, 0, name)
            let text = try String(contentsOf: output, encoding: .utf8)
            XCTAssertEqual(text.components(separatedBy: "stopped by SIGTERM after step").count, 2, text)
            let steps = CheckpointStore(runFolder: run).steps()
            XCTAssertEqual(steps.count, 1, name)
            XCTAssertLessThan(steps.first ?? 3000, 3000)
            let resumed = try launch(ranks: 2, longFlags(name) + ["--save-every", "0", "--resume", "auto"])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssert(
                try files(name, step: 3000) == files("straight", step: 3000),
                "\(name): the resumed job's end differs from the uninterrupted run's")
        }
    }
}
