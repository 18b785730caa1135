import CBatonABI
import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// GPU ranks' NCCL path end to end on a machine without a GPU: the CUDA emulator's backend on
/// emulated GPUs, the NCCL communicator compiled for it, and an emulated libnccl.so.2 that does
/// the NCCL calls over MPI (Tests/CUDAEmulator/nccl; scripts/setup/build-cuda-emulator builds them).
/// It shows Baton's side — the id broadcast, grouped ncclSend/ncclRecv for the exact tree on
/// device memory, the add, ncclAllReduce for fast, ZeRO-1's grouped ncclBroadcast/ncclReduce of
/// slices — not NCCL itself.
final class EmulatedNCCLTests: XCTestCase {
    static let emulator = TestPaths.repositoryRoot.appendingPathComponent(".build-cuda-emulator")
    static let mpiLibrary = TestPaths.repositoryRoot.appendingPathComponent(".build-mpi/libbaton_mpi.so")

    func testGPURanksThroughNCCLGiveOneProcesssBitsAtWorldSizesOneTwoAndFour() throws {
        let libraries = ["libbaton_cuda.so", "libbaton_nccl.so", "libnccl-emulated.so"].map {
            Self.emulator.appendingPathComponent($0).path
        }
        for path in libraries + [Self.mpiLibrary.path] {
            try XCTSkipUnless(
                FileManager.default.fileExists(atPath: path),
                "skipped: \(path) not built (scripts/test builds it: build-cuda-emulator with nccl.h, build-mpi)")
        }
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: "/usr/bin/mpirun"),
            "skipped: no mpirun (scripts/setup/install-deps installs OpenMPI)")
        let folder = try TestPaths.temporaryFolder("emulated-nccl")
        defer { try? FileManager.default.removeItem(at: folder) }
        let shards = URL(fileURLWithPath: try makeTinyShards(in: folder, train: 4000, validation: 500, name: "d"))
        let environment = [
            "BATON_CUDA_LIBRARY": libraries[0], "BATON_NCCL_COMM_LIBRARY": libraries[1], "BATON_LIBNCCL": libraries[2],
            "BATON_MPI_LIBRARY": Self.mpiLibrary.path, "BATON_EMULATOR_GPUS": "4",
        ]
        func flags(_ run: String) -> [String] {
            [
                "train", "--out", folder.appendingPathComponent(run).path, "--data", shards.path, "--layers", "1",
                "--heads", "2", "--embd", "16",
                "--seq-len", "8", "--batch", "2", "--global-batch", "8", "--steps", "6", "--eval-every", "3",
                "--eval-batches", "2", "--device", "cuda",
            ]
        }
        func launch(ranks: Int, _ arguments: [String]) throws -> ProcessResult {
            let run = try runBatonJob(ranks: ranks, arguments, environment: environment, scratch: folder)
            XCTAssertFalse(run.timedOut, "timed out: \(arguments.prefix(3))")
            return run.result
        }
        func model(_ run: String) throws -> Data {
            try Data(
                contentsOf: CheckpointStore(runFolder: folder.appendingPathComponent(run)).url(step: 6)
                    .appendingPathComponent(CheckpointStore.modelFile))
        }
        let one = try runBaton(flags("w1") + ["--comm", "nccl"], environment: environment)
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssert(one.stdout.contains("gradients summed exactly (pairwise tree) over NCCL"), one.stdout)
        for ranks in [2, 4] {
            let result = try launch(ranks: ranks, flags("w\(ranks)") + ["--comm", "nccl"])
            XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
            XCTAssert(result.stdout.contains("ranks: \(ranks),") && result.stdout.contains("over NCCL"), result.stdout)
            XCTAssert(
                try model("w\(ranks)") == model("w1"),
                "GPU ranks through NCCL at world size \(ranks) must give one process's bits")
        }
        // The same job through host memory and MPI gives the same bits; fast (ncclAllReduce) runs.
        let host = try launch(ranks: 2, flags("mpi") + ["--comm", "mpi"])
        XCTAssertEqual(host.status, 0, host.stdout + host.stderr)
        XCTAssert(host.stdout.contains("over MPI"), host.stdout)
        XCTAssert(try model("mpi") == model("w1"))
        let fast = try launch(ranks: 2, flags("fast") + ["--comm", "nccl", "--reduce", "fast"])
        XCTAssertEqual(fast.status, 0, fast.stdout + fast.stderr)
        XCTAssert(fast.stdout.contains("by NCCL 2."), fast.stdout)
        // ZeRO-1 on GPU ranks: the updated slices all-gathered by grouped ncclBroadcasts give one
        // process's bits; with fast, grouped ncclReduces reduce-scatter, within float rounding.
        let zero = try launch(ranks: 2, flags("zero") + ["--comm", "nccl", "--zero", "1"])
        XCTAssertEqual(zero.status, 0, zero.stdout + zero.stderr)
        XCTAssert(zero.stdout.contains("(--zero 1, slice of") && zero.stdout.contains("over NCCL"), zero.stdout)
        XCTAssert(try model("zero") == model("w1"), "ZeRO-1 through NCCL must give one process's bits")
        func moments(_ run: String) throws -> Data {
            try Data(
                contentsOf: CheckpointStore(runFolder: folder.appendingPathComponent(run)).url(step: 6)
                    .appendingPathComponent(CheckpointStore.optimizerFile))
        }
        XCTAssert(try moments("zero") == moments("w1"), "the ranks' slices of GPU moments make one process's file")
        let zeroFast = try launch(ranks: 2, flags("zerofast") + ["--comm", "nccl", "--reduce", "fast", "--zero", "1"])
        XCTAssertEqual(zeroFast.status, 0, zeroFast.stdout + zeroFast.stderr)
        func losses(_ run: String) throws -> [Float] {
            try MetricsLog.read(folder.appendingPathComponent(run).appendingPathComponent("metrics.jsonl")).map(\.loss)
        }
        assertClose(try losses("zerofast"), try losses("fast"), rtol: 1e-4, "ZeRO-1 fast against fast, through NCCL")
    }
}
