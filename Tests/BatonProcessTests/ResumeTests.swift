import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// Stop and resume, each part in a fresh `baton` process: the resumed run must end with the
/// same bytes as the uninterrupted one. The data: 48 windows of 8+1 tokens, batch 4, so an
/// epoch is 12 steps and 40 steps cross into a fourth epoch.
final class ResumeTests: TinyRunTestCase {
    var common: [String] { tinyModel + onCPU + ["--batch", "4", "--warmup", "3", "--lr", "3e-3"] + evaluated }
    let evaluated = ["--eval-every", "10", "--eval-batches", "2", "--log-every", "100"]

    func run(_ name: String) -> String { folder.appendingPathComponent(name).path }

    func checkpoint(_ run: String, _ step: Int) -> URL {
        CheckpointStore(runFolder: URL(fileURLWithPath: run)).url(step: step)
    }

    /// The final checkpoints' tensors byte for byte, and the metrics of every step (all fields
    /// but tokens_per_s, which is a timing).
    func assertSameRun(_ a: String, _ b: String, step: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        for name in ["model.safetensors", "optimizer.safetensors"] {
            let left = try Data(contentsOf: checkpoint(a, step).appendingPathComponent(name))
            let right = try Data(contentsOf: checkpoint(b, step).appendingPathComponent(name))
            XCTAssert(left == right, "\(name) of step \(step) differs between \(a) and \(b)", file: file, line: line)
        }
        func metrics(_ run: String) throws -> [StepMetrics] {
            try MetricsLog.read(URL(fileURLWithPath: run).appendingPathComponent("metrics.jsonl")).map {
                var m = $0; m.tokensPerSecond = 0; return m
            }
        }
        let left = try metrics(a), right = try metrics(b)
        XCTAssertEqual(left.map(\.step), Array(1...step), file: file, line: line)
        XCTAssertEqual(left, right, "metrics differ", file: file, line: line)
    }

    /// What a resume does with each setting, by its declaration: nothing for the same config (a
    /// nested object such as the model included, however its dictionary is stored: a checkpoint's
    /// config is decoded anew), a notice for a learning rate, a refusal naming the flag for the shape,
    /// and for the global batch unless --allow-batch-change lifts it.
    func testAResumeReportsOnlyRealChanges() throws {
        var config = TrainingConfig()
        config.model = GPTConfig(contextLength: 16, vocabularySize: 256, layers: 1, heads: 2, channels: 32)
        config.globalBatch = 8
        for _ in 0..<20 {
            let decoded = try JSONDecoder().decode(TrainingConfig.self, from: JSONEncoder().encode(config))
            XCTAssertEqual(try RunOpener.changes(from: config, to: decoded), [])
        }
        var faster = config
        faster.learningRate = 5e-4
        faster.reduce = .fast
        faster.logEvery = 1  // free: no notice
        XCTAssertEqual(
            try RunOpener.changes(from: config, to: faster),
            ["reduce changed: none -> fast", "learningRate changed: 0.001 -> 0.0005"])
        var wider = config
        wider.model.channels = 64
        XCTAssertThrowsError(try RunOpener.changes(from: config, to: wider)) {
            XCTAssertEqual(($0 as? BatonError)?.message, "--embd 64 differs from the run's 32; a resumed run keeps it")
        }
        var larger = config
        larger.globalBatch = 16
        XCTAssertThrowsError(try RunOpener.changes(from: config, to: larger)) {
            XCTAssertEqual(
                ($0 as? BatonError)?.message,
                "--global-batch 16 differs from the run's 8; pass --allow-batch-change to go on with it")
        }
        XCTAssertEqual(
            try RunOpener.changes(from: config, to: larger, allowing: ["--allow-batch-change"]),
            ["globalBatch changed: 8 -> 16"])
    }

    func testBitwiseResumeMidEpochAtEpochBoundaryAndFromStepZero() throws {
        try baton(["train", "--out", run("straight"), "--steps", "40"] + common)
        // K = 30: epoch 2, index 24 (mid-epoch, third epoch); K = 24: exactly two epochs done; K = 0.
        for (k, epoch, index) in [(30, 2, 24), (24, 2, 0), (0, 0, 0)] {
            let name = run("stop-\(k)")
            let stopped = try baton(["train", "--out", name, "--steps", "40", "--stop-at", "\(k)"] + common)
            XCTAssert(stopped.stdout.contains("stopped by --stop-at after step \(k)/40"), stopped.stdout)
            let state = try CheckpointStore.verify(checkpoint(name, k))
            XCTAssertEqual([state.step, state.epoch, state.indexInEpoch], [k, epoch, index])
            let resumed = try baton(["train", "--out", name, "--resume", "auto"] + common)
            XCTAssert(resumed.stdout.contains("resume: from"), resumed.stdout)
            try assertSameRun(run("straight"), name, step: 40)
        }
    }

    func testSampleLedgerOverFourEpochsWithRandomStops() throws {
        let straightLedger = folder.appendingPathComponent("straight.jsonl").path
        try baton(["train", "--out", run("straight"), "--steps", "40", "--sample-ledger", straightLedger] + common)
        let ledger = folder.appendingPathComponent("stopped.jsonl").path
        var generator = RandomGenerator(seed: 2024)
        var stops = Set<Int>()
        while stops.count < 4 { stops.insert(1 + Int(generator.next() % 38)) }
        for (i, stop) in stops.sorted().enumerated() {
            try baton(
                ["train", "--out", run("stopped"), "--steps", "40", "--stop-at", "\(stop)", "--sample-ledger", ledger]
                    + (i == 0 ? [] : ["--resume", "auto"]) + common)
        }
        try baton(["train", "--out", run("stopped"), "--resume", "auto", "--sample-ledger", ledger] + common)
        XCTAssertEqual(
            try String(contentsOfFile: ledger, encoding: .utf8),
            try String(contentsOfFile: straightLedger, encoding: .utf8),
            "the ledger with stops at \(stops.sorted()) differs from the uninterrupted one")
        struct Entry: Decodable { let step: Int; let epoch: Int; let index: Int; let samples: [Int] }
        let entries = try String(contentsOfFile: ledger, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode(Entry.self, from: Data($0.utf8))
        }
        XCTAssertEqual(entries.map(\.step), Array(1...40), "one batch per step, each step once")
        for epoch in 0...2 {
            let samples = entries.filter { $0.epoch == epoch }.flatMap(\.samples)
            XCTAssertEqual(samples.sorted(), Array(0..<48), "epoch \(epoch) must consume every sample exactly once")
            XCTAssertEqual(
                entries.filter { $0.epoch == epoch }.map(\.index), Array(stride(from: 0, to: 48, by: 4)),
                "epoch \(epoch) starts at index 0")
        }
        XCTAssertEqual(entries.filter { $0.epoch == 3 }.count, 4)
        try assertSameRun(run("straight"), run("stopped"), step: 40)
    }

    /// A checkpoint written by Baton 0.1.0 (state.json format 1, Fixtures/checkpoint-v1: step 17
    /// of 40) resumes under today's code and ends with the bytes and metrics of a straight run;
    /// its next checkpoints are written in today's format.
    /// A checkpoint written by Baton 0.1.0 (format 1) on another machine loads, and resuming it
    /// is exactly resuming the same state written in today's format: bitwise, on this machine.
    /// Against a run trained here from step 0 it agrees only within a tolerance: the fixture's
    /// first 17 steps ran on the AVX-512 sgemm kernels of the machine that wrote it, and an
    /// OpenBLAS that picks other kernels (AVX2, arm64) rounds them otherwise. The tolerances are
    /// about 20x the largest differences measured on OpenBLAS's Haswell, Sandybridge and Zen
    /// kernels (6.8e-5 of a weight tensor's largest value, 8.6e-8 of the first loss; docs/testing.md).
    func testACheckpointInFormatVersion1LoadsAndResumesLikeTodaysFormat() throws {
        let copy = folder.appendingPathComponent("v1").path
        try FileManager.default.copyItem(
            at: TestPaths.fixtures.appendingPathComponent("checkpoint-v1"), to: URL(fileURLWithPath: copy))
        let old = try CheckpointStore.verify(checkpoint(copy, 17))
        XCTAssertEqual(old.formatVersion, 1)
        XCTAssertEqual(old.trainingState.position, LoaderPosition(epoch: 1, index: 20))
        XCTAssertNil(old.hardware, "format 1 records no hardware")

        // The same state in today's format: loaded from the v1 files and saved again by this version.
        let resaved = folder.appendingPathComponent("resaved")
        var config = old.config
        config.dataFolder = data
        let trainer = try Trainer(
            config: config, data: try TrainingData.open(config: config, log: { _ in }), device: Device.cpu(threads: 2),
            runFolder: try RunFolder.locate(requested: resaved.path),
            restoring: try VerifiedCheckpoint(verifying: checkpoint(copy, 17)), log: { _ in })
        try trainer.saveCheckpoint()
        try FileManager.default.copyItem(
            at: URL(fileURLWithPath: copy).appendingPathComponent("metrics.jsonl"),
            to: resaved.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(
            try CheckpointStore.verify(checkpoint(resaved.path, 17)).formatVersion, CheckpointState.currentFormatVersion
        )

        try baton(["train", "--out", copy, "--resume", "auto", "--steps", "40"] + common)
        try baton(["train", "--out", resaved.path, "--resume", "auto", "--steps", "40"] + common)
        try assertSameRun(resaved.path, copy, step: 40)
        XCTAssertEqual(
            try CheckpointStore.verify(checkpoint(copy, 40)).formatVersion, CheckpointState.currentFormatVersion)

        try baton(["train", "--out", run("straight"), "--steps", "40"] + common)
        let here = try SafeTensors.read(checkpoint(run("straight"), 40).appendingPathComponent("model.safetensors"))
        let there = try SafeTensors.read(checkpoint(copy, 40).appendingPathComponent("model.safetensors"))
        XCTAssertEqual(here.names, there.names)
        for name in here.names {
            assertClose(
                try there.floats(name), try here.floats(name), rtol: 1.5e-3,
                "\(name) at step 40, continued from the v1 checkpoint vs trained here")
        }
        let losses = try MetricsLog.read(URL(fileURLWithPath: copy).appendingPathComponent("metrics.jsonl")).map(\.loss)
        let straightLosses = try MetricsLog.read(
            URL(fileURLWithPath: run("straight")).appendingPathComponent("metrics.jsonl")
        ).map(\.loss)
        assertClose(losses, straightLosses, rtol: 2e-6, "losses of steps 1-40")
    }

    /// A run never writes into its data folder: --out equal to --data, or inside it, is a usage
    /// error before anything is written, for a fresh run and for a resume pointed at new data.
    func testARunFolderInsideItsDataIsRefused() throws {
        let before = try FileManager.default.contentsOfDirectory(atPath: data).sorted()
        for out in [data!, data + "/run", data + "/../" + URL(fileURLWithPath: data).lastPathComponent + "/x"] {
            let result = try runBaton(["train", "--out", out, "--steps", "2"] + common)
            XCTAssertEqual(result.status, 2, result.stderr)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
            XCTAssert(result.stderr.contains("--out") && result.stderr.contains("inside --data"), result.stderr)
        }
        // With --resume too: refused before the run's lock file is made in the data.
        let resumed = try runBaton(["train", "--out", data, "--resume", "auto", "--steps", "2"] + common)
        XCTAssertEqual(resumed.status, 2, resumed.stderr)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: data).sorted(), before, "nothing written into the data")
        try baton(["train", "--out", run("r"), "--steps", "2", "--stop-at", "1"] + common)
        let moved = try runBaton(
            ["train", "--out", run("r"), "--resume", "auto", "--allow-data-change", "--data", folder.path]
                + common.dropFirst(2))
        XCTAssertEqual(moved.status, 2, moved.stderr)
        XCTAssert(moved.stderr.contains("inside --data"), moved.stderr)
    }

    func testKillDuringSaveFallsBackToThePreviousCheckpoint() throws {
        try baton(["train", "--out", run("straight"), "--steps", "40", "--save-every", "10"] + common)
        let marker = folder.appendingPathComponent("paused").path
        let process = try launchBaton(
            [
                "train", "--out", run("killed"), "--steps", "40", "--save-every", "10",
                "--inject-fault", "pause-in-save:20:\(marker)",
            ] + common)
        try waitForFile(marker, process: process)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal)
        let store = CheckpointStore(runFolder: URL(fileURLWithPath: run("killed")))
        XCTAssertEqual(store.steps(), [10], "the interrupted save never became a checkpoint")
        XCTAssertEqual(store.latestName(), "step-00000010")
        let listing = try baton(["checkpoints", run("killed")])
        XCTAssert(listing.stdout.contains("step-00000010") && listing.stdout.contains("verified"), listing.stdout)
        let resumed = try baton(["train", "--out", run("killed"), "--resume", "auto"] + common)
        XCTAssert(resumed.stdout.contains("step-00000010"), resumed.stdout)
        XCTAssert(resumed.stdout.contains("removed .tmp-step-00000020"), resumed.stdout)
        try assertSameRun(run("straight"), run("killed"), step: 40)
    }

    func testCorruptCheckpointsAreSkippedByAutoResumeAndRefusedByName() throws {
        try baton(["train", "--out", run("straight"), "--steps", "40", "--save-every", "10"] + common)
        let damages: [(String, (URL) throws -> Void, String)] = [
            ("flipped", { try flipByte(in: $0.appendingPathComponent("model.safetensors"), at: 4000) }, "checksum"),
            ("truncated", { try truncate($0.appendingPathComponent("optimizer.safetensors"), by: 100) }, "truncated"),
            (
                "no-state", { try FileManager.default.removeItem(at: $0.appendingPathComponent("state.json")) },
                "missing state.json"
            ),
        ]
        for (name, damage, reason) in damages {
            let runPath = run(name)
            try baton(["train", "--out", runPath, "--steps", "40", "--save-every", "10", "--stop-at", "30"] + common)
            try damage(checkpoint(runPath, 30))
            let explicit = try runBaton(["train", "--out", runPath, "--resume", "step-30"] + common)
            XCTAssertNotEqual(explicit.status, 0)
            XCTAssertEqual(explicit.stderr.split(separator: "\n").count, 1, explicit.stderr)
            XCTAssert(explicit.stderr.contains("step-00000030") && explicit.stderr.contains(reason), explicit.stderr)
            let resumed = try baton(["train", "--out", runPath, "--resume", "auto"] + common)
            XCTAssert(
                resumed.stdout.contains("skipping corrupt step-00000030") && resumed.stdout.contains(reason),
                resumed.stdout)
            XCTAssert(resumed.stdout.contains("resume: from \(checkpoint(runPath, 20).path)"), resumed.stdout)
            XCTAssert(resumed.stdout.contains("replacing corrupt step-00000030"), resumed.stdout)
            try assertSameRun(run("straight"), runPath, step: 40)
        }
        // `latest` naming a folder that is gone.
        let runPath = run("dangling")
        try baton(["train", "--out", runPath, "--steps", "40", "--save-every", "10", "--stop-at", "30"] + common)
        try FileManager.default.removeItem(at: checkpoint(runPath, 30))
        let resumed = try baton(["train", "--out", runPath, "--resume", "auto"] + common)
        XCTAssert(resumed.stdout.contains("latest names step-00000030, which is missing"), resumed.stdout)
        try assertSameRun(run("straight"), runPath, step: 40)
    }

    func testSIGTERMAndSIGINTSaveAndExitCleanly() throws {
        // A constant learning rate, so the total number of steps does not enter the schedule.
        let constant = common + ["--warmup", "0", "--min-lr", "3e-3", "--save-every", "0", "--eval-every", "0"]
        for signal in [SIGTERM, SIGINT] {
            let name = run("signal-\(signal)")
            let process = try launchBaton(["train", "--out", name, "--steps", "1000000"] + constant)
            let metrics = URL(fileURLWithPath: name).appendingPathComponent("metrics.jsonl").path
            try waitFor(process: process) {
                ((try? String(contentsOfFile: metrics, encoding: .utf8))?.split(separator: "\n").count ?? 0) >= 15
            }
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0, "a stop signal is a clean exit")
            let output = try String(contentsOf: URL(fileURLWithPath: name + ".out"), encoding: .utf8)
            XCTAssert(output.contains("stopped by \(signal == SIGTERM ? "SIGTERM" : "SIGINT")"), output)
            let steps = CheckpointStore(runFolder: URL(fileURLWithPath: name)).steps()
            XCTAssertEqual(steps.count, 1)
            let k = steps[0]
            XCTAssertGreaterThanOrEqual(k, 15)
            let lines = try MetricsLog.read(URL(fileURLWithPath: metrics))
            XCTAssertEqual(lines.last?.step, k, "the step in flight was finished and saved")
            guard signal == SIGTERM else { continue }
            try baton(["train", "--out", name, "--resume", "auto", "--steps", "\(k + 6)"] + constant)
            try baton(["train", "--out", run("straight"), "--steps", "\(k + 6)"] + constant)
            try assertSameRun(run("straight"), name, step: k + 6)
        }
    }

    func testResumeChecksShapeDataAndForks() throws {
        try baton(["train", "--out", run("a"), "--steps", "20", "--save-every", "10"] + common)
        var result = try runBaton(
            ["train", "--out", run("a"), "--resume", "auto", "--embd", "32"]
                + common.filter { $0 != "16" && $0 != "--embd" })
        XCTAssertNotEqual(result.status, 0)
        XCTAssert(result.stderr.contains("keeps its shape"), result.stderr)
        // Other data: refused, unless asked for.
        let other = folder.appendingPathComponent("other")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        try TokenShard.write(
            tokens: (0..<500).map { UInt16($0 % 200) }, to: other.appendingPathComponent("o_train_000000.bin"))
        let otherData = common.map { $0 == data ? other.path : $0 }
        result = try runBaton(["train", "--out", run("a"), "--resume", "auto", "--steps", "25"] + otherData)
        XCTAssertNotEqual(result.status, 0)
        XCTAssert(
            result.stderr.contains("--allow-data-change") && result.stderr.contains("o_train_000000.bin"), result.stderr
        )
        // Hyperparameters may change; each change is printed. Raising --steps extends the run.
        let extended = try baton(
            ["train", "--out", run("a"), "--resume", "auto", "--steps", "30", "--lr", "1e-3"]
                + common.filter { $0 != "--lr" && $0 != "3e-3" })
        XCTAssert(
            extended.stdout.contains("steps changed: 20 -> 30") && extended.stdout.contains("learningRate changed"),
            extended.stdout)
        XCTAssertEqual(CheckpointStore(runFolder: URL(fileURLWithPath: run("a"))).steps(), [10, 20, 30])
        // Resuming an older step while newer ones exist would fork the run.
        result = try runBaton(["train", "--out", run("a"), "--resume", "step-10"] + common)
        XCTAssertNotEqual(result.status, 0)
        XCTAssert(
            result.stderr.contains("step-00000020, step-00000030") && result.stderr.contains("--overwrite"),
            result.stderr)
        try baton(["train", "--out", run("a"), "--resume", "step-10", "--overwrite", "--steps", "12"] + common)
        XCTAssertEqual(CheckpointStore(runFolder: URL(fileURLWithPath: run("a"))).steps(), [10, 12])
    }

    func testEpochsSetTheTotalAndCanBeRaisedOnResume() throws {
        let first = try baton(["train", "--out", run("e"), "--epochs", "2"] + common)
        XCTAssert(first.stdout.contains("step 24/24"), "2 epochs of 12 batches: \(first.stdout)")
        let more = try baton(["train", "--out", run("e"), "--resume", "auto", "--epochs", "3"] + common)
        XCTAssert(more.stdout.contains("step 36/36"), more.stdout)
        XCTAssertEqual(
            try CheckpointStore.verify(checkpoint(run("e"), 36)).epoch, 3,
            "after three whole epochs the position is epoch 3, index 0")
    }

    /// A run killed before its first checkpoint restarts from scratch under --resume auto, with the
    /// config it was started with.
    func testResumeWithoutACheckpointRestartsWithTheRunsConfig() throws {
        let process = try launchBaton(
            ["train", "--out", run("early"), "--steps", "1000000", "--save-every", "0", "--embd", "32"]
                + common.filter { $0 != "--embd" && $0 != "16" })
        let metrics = URL(fileURLWithPath: run("early")).appendingPathComponent("metrics.jsonl").path
        try waitFor(process: process) {
            ((try? String(contentsOfFile: metrics, encoding: .utf8))?.split(separator: "\n").count ?? 0) >= 3
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let restarted = try baton(["train", "--out", run("early"), "--resume", "auto", "--steps", "5"])
        XCTAssert(
            restarted.stdout.contains("starting fresh") && restarted.stdout.contains("32 channels"), restarted.stdout)
        XCTAssertEqual(try MetricsLog.read(URL(fileURLWithPath: metrics)).map(\.step), [1, 2, 3, 4, 5])
    }

    func testFreshRunInAFolderWithCheckpointsNeedsOverwrite() throws {
        try baton(["train", "--out", run("a"), "--steps", "2", "--stop-at", "0"] + common)
        let refused = try runBaton(["train", "--out", run("a"), "--steps", "3"] + common)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssert(
            refused.stderr.contains(run("a")) && refused.stderr.contains("step-00000000")
                && refused.stderr.contains("--overwrite"), refused.stderr)
        let replaced = try baton(
            ["train", "--out", run("a"), "--steps", "3", "--save-every", "1", "--overwrite"] + common)
        XCTAssert(replaced.stdout.contains("deleted the previous run's checkpoints"), replaced.stdout)
        XCTAssertEqual(CheckpointStore(runFolder: URL(fileURLWithPath: run("a"))).steps(), [1, 2, 3])
        XCTAssertEqual(
            try MetricsLog.read(URL(fileURLWithPath: run("a")).appendingPathComponent("metrics.jsonl")).map(\.step),
            [1, 2, 3])
    }

    func testEvalSampleAndInspectTakeCheckpoints() throws {
        try baton(["train", "--out", run("a"), "--steps", "10", "--save-every", "5"] + common)
        let valShard = data + "/t_val_000000.bin"
        let fromRun = try baton(["eval", run("a"), "--data", valShard, "--sequences", "4"])
        let fromCheckpoint = try baton(["eval", checkpoint(run("a"), 10).path, "--data", valShard, "--sequences", "4"])
        let fromFile = try baton([
            "eval", checkpoint(run("a"), 10).appendingPathComponent("model.safetensors").path, "--data", valShard,
            "--sequences", "4",
        ])
        let older = try baton(["eval", checkpoint(run("a"), 5).path, "--data", valShard, "--sequences", "4"])
        func loss(_ r: ProcessResult) -> String { String(r.stdout.split(separator: "\n").last ?? "") }
        XCTAssertEqual(loss(fromRun), loss(fromCheckpoint))
        XCTAssertEqual(loss(fromRun), loss(fromFile))
        XCTAssertNotEqual(loss(fromRun), loss(older))
        let inspected = try baton(["inspect", run("a")])
        for text in [
            "\"step\" : 10", "\"index_in_epoch\"", "\"crc32c\"", "transformer.h.0.attn.c_attn.weight  F32  [16, 48]",
            "transformer.wte.weight.exp_avg_sq",
        ] {
            XCTAssert(inspected.stdout.contains(text), "inspect lacks \(text)")
        }
        try baton(["sample", checkpoint(run("a"), 5).path, "--length", "5"])
    }
}

/// Starts `baton` without waiting; stdout and stderr go to ARGS' --out + ".out" / ".err" when
/// there is an --out, else to /dev/null.
func launchBaton(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Process {
    let process = Process()
    process.executableURL = TestPaths.batonExecutable
    process.arguments = arguments
    process.currentDirectoryURL = TestPaths.repositoryRoot
    process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
    if let index = arguments.firstIndex(of: "--out"), index + 1 < arguments.count {
        let base = arguments[index + 1]
        FileManager.default.createFile(atPath: base + ".out", contents: nil)
        FileManager.default.createFile(atPath: base + ".err", contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: base + ".out")
        process.standardError = FileHandle(forWritingAtPath: base + ".err")
    } else {
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
    }
    try process.run()
    return process
}

func waitFor(process: Process, timeout: Double = 60, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
        guard process.isRunning else {
            throw BatonError("baton exited (status \(process.terminationStatus)) before the test could act")
        }
        guard Date() < deadline else { process.terminate(); throw BatonError("timed out waiting for baton") }
        usleep(20_000)
    }
}

func waitForFile(_ path: String, process: Process) throws {
    try waitFor(process: process) { FileManager.default.fileExists(atPath: path) }
}
