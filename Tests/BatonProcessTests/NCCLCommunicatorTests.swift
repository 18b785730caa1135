import CBatonABI
import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The NCCL communicator (Comm/nccl) as CMake built it against the real nccl.h, loading the real
/// libnccl.so.2 of PyPI's nvidia-nccl-cu12 wheel (scripts/setup/fetch-nccl; scripts/test sets
/// BATON_LIBNCCL). There is no GPU here, so these stop at the first call that needs one; the
/// exchanges themselves run in scripts/checks/gpu-check on a GPU host (not run on a GPU yet).
final class NCCLCommunicatorTests: XCTestCase {
    static let library = TestPaths.repositoryRoot.appendingPathComponent(".build-cuda/libbaton_nccl.so")
    var saved: [String: String?] = [:]

    override func setUpWithError() throws {
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: Self.library.path),
            "skipped: \(Self.library.path) not built (scripts/test builds it with cmake against the wheel's nccl.h)")
        let nccl = ProcessInfo.processInfo.environment["BATON_LIBNCCL"] ?? ""
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: nccl),
            "skipped: no libnccl.so.2 (scripts/test fetches it with scripts/setup/fetch-nccl and sets BATON_LIBNCCL)")
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
        let (table, handle, version) = try DeviceCommunicator.load()
        defer { _ = table.pointee.finalize(handle) }
        XCTAssert(version.hasPrefix("2."), version)
        XCTAssertEqual(String(cString: table.pointee.name!), "nccl")
        var id = [UInt8](repeating: 0, count: Int(BATON_DEVICE_COMM_ID_BYTES))
        XCTAssertEqual(table.pointee.unique_id(handle, &id), 0, String(cString: table.pointee.last_error(handle)!))
        XCTAssert(id.contains { $0 != 0 }, "NCCL's unique id should not be all zeros")
        if let gpu = nvidiaGPUPresent {
            throw XCTSkip("skipped the missing-GPU error: \(gpu); scripts/checks/gpu-check runs NCCL there")
        }
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
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: emulator.path),
            "skipped: \(emulator.path) not built (scripts/setup/build-cuda-emulator)")
        // The NCCL communicator is the real CUDA build: on a GPU its cudaSetDevice succeeds.
        if let gpu = nvidiaGPUPresent { throw XCTSkip("skipped: \(gpu); the communicator would start there") }
        let out = try TestPaths.temporaryFolder("nccl-train")
        defer { try? FileManager.default.removeItem(at: out) }
        let environment = ["BATON_CUDA_LIBRARY": emulator.path, "BATON_NCCL_COMM_LIBRARY": Self.library.path]
        let run = out.appendingPathComponent("run").path
        let gpu = try runBaton(
            ["train", "--device", "cuda", "--comm", "nccl", "--out", run, "--steps", "2"], environment: environment)
        XCTAssertEqual(gpu.status, 1, gpu.stdout + gpu.stderr)
        let lines = gpu.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, gpu.stderr)
        XCTAssert(gpu.stderr.contains("baton: error: rank 0: NCCL did not start on GPU 0: cudaSetDevice:"), gpu.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run), "nothing is written")
        let cpu = try runBaton(
            ["train", "--device", "cpu", "--comm", "nccl", "--out", run, "--steps", "2"], environment: environment)
        XCTAssertEqual(cpu.status, 2, cpu.stderr)
        XCTAssert(cpu.stderr.contains("--comm nccl needs GPU ranks (--device cuda)"), cpu.stderr)
    }
}
