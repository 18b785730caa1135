import Baton
import Foundation

let tortureSpec = CommandSpec(
    name: "torture",
    summary:
        "Train a tiny model while killing it with SIGKILL at random instants (between steps, mid-step, inside "
        + "saves), resume with --resume auto each time, and compare the end with an uninterrupted run byte for byte.",
    usage:
        "baton torture [--kills N] [--seed S] [--work DIR] [--ranks N] [--arch gpt2|llama] [--zero 0|1] [--async-save]",
    options: options(
        """
        --kills N: SIGKILLs to deliver (default 50)
        --seed S: seed for the kill times and the data (default 1); a failure replays with the same seed
        --work DIR: working folder, kept afterwards (default: a temporary folder, deleted when all is well)
        --ranks N: run the tortured job under mpirun with N ranks and kill a random rank each time (default 1: one
            process)
        --arch gpt2|llama: the tortured model's family (default gpt2; llama: multi-query attention, q/k/v biases)
        --zero 0|1: train the tortured job with --zero 1 (ZeRO-1), against an unsharded reference (default 0)
        --async-save: the tortured runs save in the background (the uninterrupted one saves as without it)
        """))

func tortureCommand(_ arguments: [String]) throws {
    guard let parsed = try tortureSpec.parse(arguments) else { return }
    let kills = try parsed.int("--kills") ?? 50
    let seed = try parsed.seed("--seed") ?? 1
    guard kills >= 1 else { throw UsageError("baton torture: --kills must be at least 1") }
    let work = URL(fileURLWithPath: parsed.string("--work") ?? NSTemporaryDirectory() + "baton-torture-\(getpid())")
    let keep = parsed.string("--work") != nil
    let ranks = try parsed.int("--ranks") ?? 1
    guard ranks >= 1 else { throw UsageError("baton torture: --ranks must be at least 1") }
    if ranks > 1 {
        guard FileManager.default.fileExists(atPath: "/usr/bin/mpirun") else {
            throw BatonError("baton torture --ranks: no /usr/bin/mpirun; install OpenMPI (scripts/setup/install-deps)")
        }
        guard FileManager.default.fileExists(atPath: Communicator.candidatePath) else {
            throw BatonError(
                "baton torture --ranks: no MPI communicator library at \(Communicator.candidatePath); build it with "
                    + "scripts/build (which puts it beside baton), or set BATON_MPI_LIBRARY"
            )
        }
    }
    let architecture = parsed.string("--arch") ?? "gpt2"
    guard let family = ModelArchitecture(rawValue: architecture) else {
        throw UsageError("baton torture: --arch expects gpt2 or llama, got '\(architecture)'")
    }
    let zero = try parsed.int("--zero") ?? 0
    guard zero == 0 || zero == 1 else { throw UsageError("baton torture: --zero expects 0 or 1, got \(zero)") }
    let report = try Torture(
        work: work, kills: kills, seed: seed, ranks: ranks, architecture: family, zero: zero,
        asyncSave: parsed.flag("--async-save")
    ).run()
    for line in report.lines { say(line) }
    if report.passed, !keep { try? FileManager.default.removeItem(at: work) }
    guard report.passed else { throw BatonError("torture failed (seed \(seed)); the runs are in \(work.path)") }
}

/// The harness behind `baton torture`, driving copies of this same executable.
struct Torture {
    let work: URL
    let kills: Int
    let seed: UInt64
    /// Ranks of the tortured job (1: one process). The uninterrupted reference is one process at the
    /// same global batch, so with ranks the end must also match across world sizes.
    let ranks: Int
    let architecture: ModelArchitecture
    /// The tortured job's --zero; the uninterrupted reference is always unsharded.
    var zero = 0
    /// The tortured runs write their periodic checkpoints in the background (--async-save).
    var asyncSave = false

    struct Report {
        var lines: [String]
        var passed: Bool
    }

    var executable: URL { URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath() }

    func run() throws -> Report {
        let fileManager = FileManager.default
        try? fileManager.removeItem(at: work)
        try fileManager.createDirectory(at: work, withIntermediateDirectories: true)
        var generator = RandomGenerator(seed: seed)
        // Data: 48 windows of 8+1 tokens (an epoch is 12 steps) of seeded letters.
        let shards = work.appendingPathComponent("shards")
        try fileManager.createDirectory(at: shards, withIntermediateDirectories: true)
        let letters = (0..<485).map { _ in UInt16(generator.next() % 5 == 0 ? 32 : 97 + generator.next() % 26) }
        try TokenShard.write(
            tokens: Array(letters.prefix(385)), to: shards.appendingPathComponent("t_train_000000.bin"))
        try TokenShard.write(tokens: Array(letters.suffix(100)), to: shards.appendingPathComponent("t_val_000000.bin"))
        let steps = max(60, 12 * kills)
        let batch = ranks > 1 ? ["--batch", "2", "--global-batch", "\(2 * ranks)"] : ["--batch", "4"]
        let common =
            ["--data", shards.path, "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "8"] + batch
            + (architecture == .llama ? ["--arch", "llama", "--kv-heads", "1", "--attention-bias", "true"] : []) + [
                "--steps", "\(steps)", "--warmup", "5", "--lr", "3e-3", "--save-every", "2", "--keep-last", "3",
                "--eval-every", "25", "--eval-batches", "2", "--log-every", "1000000", "--device", "cpu", "--threads",
                "1",
            ]

        let tortureFlags = (zero == 1 ? ["--zero", "1"] : []) + (asyncSave ? ["--async-save"] : [])
        // Calibrate: process start-up, and the uninterrupted reference run.
        let calibration = common.map { $0 == "\(steps)" ? "1" : $0 }
        let startup = try timed {
            try runToEnd(
                ["train", "--out", work.appendingPathComponent("calibrate").path] + calibration + tortureFlags,
                ranks: ranks)
        }
        let startupAlone =
            ranks > 1
            ? try timed {
                try runToEnd(["train", "--out", work.appendingPathComponent("calibrate-alone").path] + calibration)
            } : startup
        let straight = work.appendingPathComponent("straight").path
        let whole = try timed { try runToEnd(["train", "--out", straight] + common) }
        let perStep = max((whole - startupAlone) / Double(steps), 1e-5)

        var done = 0, inSave = 0, inSaveWrite = 0, launches = 0, lost = 0, mismatches = 0, rounds = 0
        var notes: [String] = []
        // A round: a fresh run folder, killed until the run completes or every kill is spent, then
        // run to the end and compared with the uninterrupted run.
        while done < kills {
            rounds += 1
            let tortured = work.appendingPathComponent("tortured-\(rounds)").path
            let store = CheckpointStore(runFolder: URL(fileURLWithPath: tortured))
            var newestBefore = -1
            var seenTemporaries: Set<String> = []
            attempts: while done < kills {
                // Kill within the first ~steps/(2 kills) steps of this attempt's work, so most kills
                // land before the run is over.
                let delay =
                    0.5 * startup + generator.nextUniform() * (startup + perStep * Double(steps) / Double(2 * kills))
                let process = try launch(
                    ["train", "--out", tortured, "--resume", "auto"] + common + tortureFlags,
                    log: work.appendingPathComponent("tortured.log"),
                    ranks: ranks)
                launches += 1
                usleep(UInt32(delay * 1e6))
                guard process.isRunning else {
                    process.waitUntilExit()
                    if process.terminationStatus != 0 {
                        lost += 1
                        notes.append("an attempt exited with status \(process.terminationStatus) before its kill")
                    }
                    break attempts
                }
                if ranks > 1 {
                    // A random rank dies; mpirun then ends the others.
                    let victim = Int(generator.next() % UInt64(ranks))
                    guard let pid = rankProcess(victim, of: tortured) else {
                        // Not started yet, or already gone: end the job as a whole.
                        kill(process.processIdentifier, SIGKILL)
                        for rank in 0..<ranks { if let pid = rankProcess(rank, of: tortured) { kill(pid, SIGKILL) } }
                        process.waitUntilExit()
                        continue
                    }
                    kill(pid, SIGKILL)
                    let deadline = Date().addingTimeInterval(30)
                    while process.isRunning && Date() < deadline { usleep(10_000) }
                    if process.isRunning {
                        lost += 1
                        notes.append("the job outlived a killed rank by 30 s")
                        kill(process.processIdentifier, SIGKILL)
                    }
                    for rank in 0..<ranks { if let pid = rankProcess(rank, of: tortured) { kill(pid, SIGKILL) } }
                } else {
                    kill(process.processIdentifier, SIGKILL)
                }
                process.waitUntilExit()
                done += 1
                // Inside a save: a temporary folder not yet renamed, or `latest` not yet moved on.
                let names = (try? fileManager.contentsOfDirectory(atPath: store.folder.path)) ?? []
                let newestFolder = store.steps().last.map { CheckpointStore.name(step: $0) }
                // A .tmp- folder's name holds its writer's pid: one not there after an earlier kill
                // was left by this attempt (an earlier one's may outlive a kill before the cleanup).
                let temporaries = Set(names.filter { $0.hasPrefix(".tmp-") })
                let leftTemporary = !temporaries.subtracting(seenTemporaries).isEmpty
                seenTemporaries.formUnion(temporaries)
                if leftTemporary { inSaveWrite += 1 }
                if leftTemporary || names.contains(where: { $0.hasPrefix(".old-") })
                    || store.latestName() != newestFolder
                {
                    inSave += 1
                }
                // Nothing good may be lost: every checkpoint folder verifies, and the newest good
                // step never goes backwards.
                var newestGood = -1
                for step in store.steps() {
                    do { _ = try CheckpointStore.verify(store.url(step: step)); newestGood = step } catch {
                        lost += 1
                        notes.append("after kill \(done): \(error)")
                    }
                }
                if newestGood < newestBefore {
                    lost += 1
                    notes.append(
                        "after kill \(done): newest good checkpoint went back from step \(newestBefore) to "
                            + "\(newestGood)"
                    )
                }
                newestBefore = max(newestBefore, newestGood)
            }
            try runToEnd(
                ["train", "--out", tortured, "--resume", "auto"] + common + tortureFlags,
                log: work.appendingPathComponent("tortured.log"), ranks: ranks)
            launches += 1
            let final = CheckpointStore(runFolder: URL(fileURLWithPath: straight)).url(step: steps)
            for name in [CheckpointStore.modelFile, CheckpointStore.optimizerFile] {
                let a = try Data(contentsOf: final.appendingPathComponent(name))
                let b = try Data(contentsOf: store.url(step: steps).appendingPathComponent(name))
                if a != b {
                    mismatches += 1;
                    notes.append("round \(rounds): \(name) of step \(steps) differs from the uninterrupted run's")
                }
            }
            func metrics(_ run: String) throws -> [StepMetrics] {
                try MetricsLog.read(URL(fileURLWithPath: run).appendingPathComponent("metrics.jsonl")).map {
                    var m = $0; m.tokensPerSecond = 0; return m
                }
            }
            if try metrics(straight) != metrics(tortured) {
                mismatches += 1; notes.append("round \(rounds): metrics.jsonl differs from the uninterrupted run's")
            }
        }
        let window = 1000 * (1.5 * startup + perStep * Double(steps) / Double(2 * kills))
        let lines =
            [
                "torture: seed \(seed), "
                    + "\(ranks > 1 ? "\(ranks) ranks under mpirun (a random rank killed each time), " : "")"
                    + "\(zero == 1 ? "--zero 1 (the reference unsharded), " : "")\(steps) "
                    + "steps a run, checkpoint every 2 steps, SIGKILL "
                    + "\(String(format: "%.0f", 500 * startup))-\(String(format: "%.0f", window)) ms after each launch"
            ]
            + notes.map { "  note: \($0)" } + [
                "kills: \(done)",
                "kills inside a save: \(inSave) (\(inSaveWrite) while writing it: a .tmp- folder left)",
                "resumes: \(launches - rounds)",
                "runs compared with the uninterrupted one: \(rounds)",
                "mismatches: \(mismatches)",
                "checkpoints lost: \(lost)",
            ]
        return Report(lines: lines, passed: done == kills && mismatches == 0 && lost == 0)
    }

    private func launch(_ arguments: [String], log: URL, ranks: Int = 1) throws -> Process {
        let process = Process()
        if ranks > 1 {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
            process.arguments =
                [
                    "--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)", "-x", "BATON_MPI_LIBRARY",
                    executable.path,
                ] + arguments
            process.environment = ProcessInfo.processInfo.environment.merging([
                "BATON_MPI_LIBRARY": Communicator.candidatePath
            ]) { $1 }
        } else {
            process.executableURL = executable
            process.arguments = arguments
        }
        if !FileManager.default.fileExists(atPath: log.path) {
            FileManager.default.createFile(atPath: log.path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// The process of rank `rank` of the job training `run`, found by the rank mpirun gave it.
    private func rankProcess(_ rank: Int, of run: String) -> pid_t? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for name in names {
            guard let pid = pid_t(name),
                let environment = FileManager.default.contents(atPath: "/proc/\(name)/environ"),
                let command = FileManager.default.contents(atPath: "/proc/\(name)/cmdline")
            else { continue }
            let variables = environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            let arguments = command.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if variables.contains("OMPI_COMM_WORLD_RANK=\(rank)") && arguments.contains(run)
                && arguments.first?.hasSuffix("baton") == true
            {
                return pid
            }
        }
        return nil
    }

    private func runToEnd(_ arguments: [String], log: URL? = nil, ranks: Int = 1) throws {
        let process = try launch(arguments, log: log ?? work.appendingPathComponent("reference.log"), ranks: ranks)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BatonError(
                "torture: baton \(arguments.prefix(3).joined(separator: " ")) failed (status "
                    + "\(process.terminationStatus)); see \(work.path)"
            )
        }
    }

    private func timed(_ body: () throws -> Void) rethrows -> Double {
        let start = monotonicSeconds()
        try body()
        return monotonicSeconds() - start
    }
}
