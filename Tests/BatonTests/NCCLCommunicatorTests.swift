import CBatonABI
import Foundation
import XCTest
@testable import Baton

/// The NCCL communicator (Comm/nccl) as CMake built it against the real nccl.h, loading the real
/// libnccl.so.2 of PyPI's nvidia-nccl-cu12 wheel (scripts/setup/fetch-nccl; scripts/test sets
/// BATON_LIBNCCL). There is no GPU here, so these stop at the first call that needs one; the
/// exchanges themselves run in scripts/checks/gpu-check on a GPU host (not run on a GPU yet).
final class NCCLCommunicatorTests: XCTestCase {
    static let library = TestPaths.repositoryRoot.appendingPathComponent(".build-cuda/libbaton_nccl.so")
    var saved: [String: String?] = [:]

    override func setUpWithError() throws {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: Self.library.path),
                          "skipped: \(Self.library.path) not built (scripts/test builds it with cmake against the wheel's nccl.h)")
        let nccl = ProcessInfo.processInfo.environment["BATON_LIBNCCL"] ?? ""
        try XCTSkipUnless(FileManager.default.fileExists(atPath: nccl), "skipped: no libnccl.so.2 (scripts/test fetches it with scripts/setup/fetch-nccl and sets BATON_LIBNCCL)")
        set("BATON_NCCL_COMM_LIBRARY", Self.library.path)
    }

    override func tearDown() {
        for (name, value) in saved {
            if let value { setenv(name, value, 1) } else { unsetenv(name) }
        }
        saved = [:]
    }

    func set(_ name: String, _ value: String) {
        if saved[name] == nil { saved[name] = .some(ProcessInfo.processInfo.environment[name]) }
        setenv(name, value, 1)
    }

    func testItLoadsNCCLMakesAnIdAndStopsAtTheMissingGPU() throws {
        let (table, version) = try DeviceCommunicator.load()
        XCTAssert(version.hasPrefix("2."), version)
        XCTAssertEqual(String(cString: table.pointee.name!), "nccl")
        var id = [UInt8](repeating: 0, count: Int(BATON_DEVICE_COMM_ID_BYTES))
        XCTAssertEqual(table.pointee.unique_id(&id), 0, String(cString: table.pointee.last_error()!))
        XCTAssert(id.contains { $0 != 0 }, "NCCL's unique id should not be all zeros")
        if let gpu = nvidiaGPUPresent { throw XCTSkip("skipped the missing-GPU error: \(gpu); scripts/checks/gpu-check runs NCCL there") }
        XCTAssertThrowsError(try DeviceCommunicator.join(over: .single(), deviceIndex: 0, timeoutSeconds: 5)) { error in
            XCTAssert("\(error)".contains("rank 0: NCCL did not start on GPU 0: cudaSetDevice:"), "\(error)")
        }
    }

    func testAMissingNCCLSaysWhatToSet() throws {
        set("BATON_LIBNCCL", "/nonexistent/libnccl.so.2")
        XCTAssertThrowsError(try DeviceCommunicator.load()) { error in
            XCTAssert("\(error)".contains("NCCL: cannot load /nonexistent/libnccl.so.2"), "\(error)")
            XCTAssert("\(error)".contains("point BATON_LIBNCCL at libnccl.so.2"), "\(error)")
        }
        set("BATON_NCCL_COMM_LIBRARY", "/nonexistent/libbaton_nccl.so")
        XCTAssertThrowsError(try DeviceCommunicator.load()) { error in
            XCTAssert("\(error)".contains("no NCCL communicator library at /nonexistent/libbaton_nccl.so"), "\(error)")
        }
    }

    /// `--comm nccl` on the CUDA emulator (a "cuda" device without a GPU): one line, exit 1, no
    /// run folder; on CPU ranks it is a usage error.
    func testTrainWithCommNCCLWithoutAGPUIsAOneLineError() throws {
        let emulator = CUDABackendTests.emulatorFolder.appendingPathComponent("libbaton_cuda.so")
        try XCTSkipUnless(FileManager.default.fileExists(atPath: emulator.path), "skipped: \(emulator.path) not built (scripts/setup/build-cuda-emulator)")
        // The NCCL communicator is the real CUDA build: on a GPU its cudaSetDevice succeeds.
        if let gpu = nvidiaGPUPresent { throw XCTSkip("skipped: \(gpu); the communicator would start there") }
        let out = try TestPaths.temporaryFolder("nccl-train")
        defer { try? FileManager.default.removeItem(at: out) }
        let environment = ["BATON_CUDA_LIBRARY": emulator.path, "BATON_NCCL_COMM_LIBRARY": Self.library.path]
        let run = out.appendingPathComponent("run").path
        let gpu = try runBaton(["train", "--device", "cuda", "--comm", "nccl", "--out", run, "--steps", "2"], environment: environment)
        XCTAssertEqual(gpu.status, 1, gpu.stdout + gpu.stderr)
        let lines = gpu.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, gpu.stderr)
        XCTAssert(gpu.stderr.contains("baton: error: rank 0: NCCL did not start on GPU 0: cudaSetDevice:"), gpu.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run), "nothing is written")
        let cpu = try runBaton(["train", "--device", "cpu", "--comm", "nccl", "--out", run, "--steps", "2"], environment: environment)
        XCTAssertEqual(cpu.status, 2, cpu.stderr)
        XCTAssert(cpu.stderr.contains("--comm nccl needs GPU ranks (--device cuda)"), cpu.stderr)
    }
}

/// GPU ranks' NCCL path end to end on a machine without a GPU: the CUDA emulator's backend on
/// emulated GPUs, the NCCL communicator compiled for it, and an emulated libnccl.so.2 that does
/// the NCCL calls over MPI (Tests/CUDAEmulator/nccl; scripts/setup/build-cuda-emulator builds them).
/// It shows Baton's side — the id broadcast, grouped ncclSend/ncclRecv for the exact tree on
/// device memory, the add, ncclAllReduce for fast — not NCCL itself.
final class EmulatedNCCLTests: XCTestCase {
    static let emulator = TestPaths.repositoryRoot.appendingPathComponent(".build-cuda-emulator")
    static let mpiLibrary = TestPaths.repositoryRoot.appendingPathComponent(".build-mpi/libbaton_mpi.so")

    func testGPURanksThroughNCCLGiveOneProcesssBitsAtWorldSizesOneTwoAndFour() throws {
        let libraries = ["libbaton_cuda.so", "libbaton_nccl.so", "libnccl-emulated.so"].map { Self.emulator.appendingPathComponent($0).path }
        for path in libraries + [Self.mpiLibrary.path] {
            try XCTSkipUnless(FileManager.default.fileExists(atPath: path), "skipped: \(path) not built (scripts/test builds it: build-cuda-emulator with nccl.h, build-mpi)")
        }
        try XCTSkipUnless(FileManager.default.fileExists(atPath: "/usr/bin/mpirun"), "skipped: no mpirun (scripts/setup/install-deps installs OpenMPI)")
        let folder = try TestPaths.temporaryFolder("emulated-nccl")
        defer { try? FileManager.default.removeItem(at: folder) }
        let text = try Data(contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt"))
        let shards = folder.appendingPathComponent("shards")
        try FileManager.default.createDirectory(at: shards, withIntermediateDirectories: true)
        try TokenShard.write(tokens: text.prefix(4000).map { UInt16($0) }, to: shards.appendingPathComponent("d_train_000000.bin"))
        try TokenShard.write(tokens: text.dropFirst(4000).prefix(500).map { UInt16($0) }, to: shards.appendingPathComponent("d_val_000000.bin"))
        let environment = ["BATON_CUDA_LIBRARY": libraries[0], "BATON_NCCL_COMM_LIBRARY": libraries[1], "BATON_LIBNCCL": libraries[2],
                           "BATON_MPI_LIBRARY": Self.mpiLibrary.path, "BATON_EMULATOR_GPUS": "4"]
        func flags(_ run: String) -> [String] {
            ["train", "--out", folder.appendingPathComponent(run).path, "--data", shards.path, "--layers", "1", "--heads", "2", "--embd", "16",
             "--seq-len", "8", "--batch", "2", "--global-batch", "8", "--steps", "6", "--eval-every", "3", "--eval-batches", "2", "--device", "cuda"]
        }
        func launch(ranks: Int, _ arguments: [String]) throws -> ProcessResult {
            let run = try runBatonJob(ranks: ranks, arguments, environment: environment, scratch: folder)
            XCTAssertFalse(run.timedOut, "timed out: \(arguments.prefix(3))")
            return run.result
        }
        func model(_ run: String) throws -> Data {
            try Data(contentsOf: CheckpointStore(runFolder: folder.appendingPathComponent(run)).url(step: 6).appendingPathComponent(CheckpointStore.modelFile))
        }
        let one = try runBaton(flags("w1") + ["--comm", "nccl"], environment: environment)
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssert(one.stdout.contains("gradients summed exactly (pairwise tree) over NCCL"), one.stdout)
        for ranks in [2, 4] {
            let result = try launch(ranks: ranks, flags("w\(ranks)") + ["--comm", "nccl"])
            XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
            XCTAssert(result.stdout.contains("ranks: \(ranks),") && result.stdout.contains("over NCCL"), result.stdout)
            XCTAssert(try model("w\(ranks)") == model("w1"), "GPU ranks through NCCL at world size \(ranks) must give one process's bits")
        }
        // The same job through host memory and MPI gives the same bits; fast (ncclAllReduce) runs.
        let host = try launch(ranks: 2, flags("mpi") + ["--comm", "mpi"])
        XCTAssertEqual(host.status, 0, host.stdout + host.stderr)
        XCTAssert(host.stdout.contains("over MPI"), host.stdout)
        XCTAssert(try model("mpi") == model("w1"))
        let fast = try launch(ranks: 2, flags("fast") + ["--comm", "nccl", "--reduce", "fast"])
        XCTAssertEqual(fast.status, 0, fast.stdout + fast.stderr)
        XCTAssert(fast.stdout.contains("by NCCL 2."), fast.stdout)
    }
}
