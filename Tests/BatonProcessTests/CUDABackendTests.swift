import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The CUDA backend as far as a machine without a GPU can check it: the library scripts/test
/// compiles with nvcc loads and exports exactly the versioned table; every way of not having a
/// usable GPU is a one-line error; `auto` trains on the CPU. The GPU checks themselves run in
/// `baton selftest --device cuda` (scripts/checks/gpu-check) and are skipped here, saying so.
final class CUDABackendTests: XCTestCase {
    static let library = TestPaths.repositoryRoot.appendingPathComponent(".build-cuda/libbaton_cuda.so")

    func builtLibrary() throws -> URL {
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: CUDABackendTests.library.path),
            "skipped: \(CUDABackendTests.library.path) not built (scripts/test builds it with CMake and nvcc)")
        return CUDABackendTests.library
    }

    func testTheLibraryExportsOnlyTheVersionedTable() throws {
        let library = try builtLibrary()
        let nm = Process()
        nm.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        nm.arguments = ["nm", "-D", "--defined-only", library.path]
        let pipe = Pipe()
        nm.standardOutput = pipe
        try nm.run()
        let symbols = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        nm.waitUntilExit()
        let exported = symbols.split(separator: "\n").map { $0.split(separator: " ").last.map(String.init) ?? "" }
        XCTAssertEqual(exported, ["baton_backend_get_table"], "the kernels stay hidden behind the table")
    }

    func oneLineError(
        _ arguments: [String], library: String, file: StaticString = #filePath, line: UInt = #line
    ) throws -> String {
        let result = try runBaton(arguments, environment: ["BATON_CUDA_LIBRARY": library])
        XCTAssertEqual(result.status, 1, file: file, line: line)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr, file: file, line: line)
        return result.stderr
    }

    func testEveryMissingPieceIsAOneLineError() throws {
        let bench = ["bench", "--device", "cuda", "--steps", "1"]
        XCTAssert(
            try oneLineError(bench, library: "/nonexistent/libbaton_cuda.so").contains(
                "no CUDA backend library at /nonexistent/libbaton_cuda.so"))
        XCTAssert(try oneLineError(bench, library: "/etc/hostname").contains("cannot load /etc/hostname"))
        let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"].first {
            FileManager.default.fileExists(atPath: $0)
        }
        if let libm { XCTAssert(try oneLineError(bench, library: libm).contains("is not a Baton backend")) }
        // A library from another version of Baton.
        let folder = try TestPaths.temporaryFolder("abi")
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = folder.appendingPathComponent("other.c"), library = folder.appendingPathComponent("libother.so")
        let header = TestPaths.repositoryRoot.appendingPathComponent("Sources/CBatonABI/include").path
        try """
        #include "baton_backend.h"
        static baton_backend_table table = { BATON_BACKEND_ABI_VERSION + 1, "other" };
        const baton_backend_table *baton_backend_get_table(void) { return &table; }
        """.write(to: source, atomically: true, encoding: .utf8)
        XCTAssertEqual(
            shell("cc -shared -fPIC -I'\(header)' '\(source.path)' -o '\(library.path)'"), 0,
            "cc must build the stand-in library")
        XCTAssert(try oneLineError(bench, library: library.path).contains("version mismatch"))
    }

    func testNoGPUIsAOneLineErrorAndAutoTrainsOnTheCPU() throws {
        let library = try builtLibrary().path
        let probe = try runBaton(
            ["bench", "--device", "cuda", "--steps", "1", "--warmup-steps", "0"],
            environment: ["BATON_CUDA_LIBRARY": library])
        try XCTSkipIf(probe.status == 0, "skipped: this machine has a GPU; baton selftest --device cuda checks it")
        let message = try oneLineError(["bench", "--device", "cuda"], library: library)
        XCTAssert(message.contains("no CUDA device") || message.contains("no usable NVIDIA driver"), message)
        let auto = try runBaton(
            [
                "bench", "--device", "auto", "--steps", "1", "--warmup-steps", "0", "--layers", "1", "--embd", "16",
                "--heads", "2",
            ],
            environment: ["BATON_CUDA_LIBRARY": library])
        XCTAssertEqual(auto.status, 0, auto.stderr)
        XCTAssert(auto.stdout.contains("auto picked cpu"), auto.stdout)
    }

    func testSelftestOnTheGPU() throws {
        let library = try builtLibrary().path
        let result = try runBaton(["selftest", "--device", "cuda"], environment: ["BATON_CUDA_LIBRARY": library])
        try XCTSkipIf(
            result.stderr.contains("no CUDA device") || result.stderr.contains("no usable NVIDIA driver"),
            "skipped: no GPU (\(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)))")
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
    }

    // MARK: the CUDA code, run on the CPU by the emulator

    static let emulatorFolder = TestPaths.repositoryRoot.appendingPathComponent(".build-cuda-emulator")

    func builtEmulator() throws -> URL {
        let library = CUDABackendTests.emulatorFolder.appendingPathComponent("libbaton_cuda.so")
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: library.path),
            "skipped: \(library.path) not built (scripts/test builds it with scripts/setup/build-cuda-emulator)")
        return library
    }

    /// Kernels/*.cu compiled for the emulator (Tests/CUDAEmulator): every op, training parity, resume
    /// on "cuda" and across backends, through the same table and Device type a GPU uses.
    func testSelftestPassesOnTheCUDAEmulator() throws {
        let library = try builtEmulator()
        // Beside the emulated backend, the NCCL communicator built for the emulator takes the
        // emulated NCCL (when scripts/setup/build-cuda-emulator found nccl.h): two more rows.
        let emulatedNCCL = CUDABackendTests.emulatorFolder.appendingPathComponent("libnccl-emulated.so").path
        let withNCCL = FileManager.default.fileExists(atPath: emulatedNCCL)
        let result = try runBaton(
            ["selftest", "--device", "cuda"],
            environment: ["BATON_CUDA_LIBRARY": library.path, "BATON_LIBNCCL": emulatedNCCL])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssert(
            result.stdout.contains("CUDA emulator on the CPU"),
            "the table must say it ran on the emulator: " + result.stdout)
        XCTAssert(
            result.stdout.contains(withNCCL ? "selftest: 353 passed, 0 failed" : "selftest: 351 passed, 0 failed"),
            result.stdout)
        if withNCCL { XCTAssert(result.stdout.contains("send/recv to itself"), result.stdout) }
        // Each row is printed as it is measured ("row: ..."), before the table repeats them all.
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let live = lines.filter { $0.hasPrefix("row: ") }
        XCTAssertEqual(live.count, withNCCL ? 353 : 351, "one live line per row")
        if let table = lines.firstIndex(where: { $0.hasPrefix("check ") }) {
            XCTAssert(
                lines[..<table].filter { $0.hasPrefix("row: ") }.count == live.count,
                "every live row comes before the table")
        } else {
            XCTFail("no table: " + result.stdout)
        }
        // Every precision: the ops at two shapes, training parity, bitwise resume, bf16 -> fp32.
        for row in [
            "matmul, fresh output [loops, bf16]", "matmul [loops, tf32]", "matmul [small, bf16]",
            "residual_layernorm_forward [small, tf32]",
            "linear_forward, gelu, unaligned [loops, bf16]", "matmul_gelu_backward [small, tf32]",
            "training: 20 losses vs cpu [bf16]",
            "resume on cuda: files differing [tf32]", "resume on cuda: files differing [bf16]",
            "training: --recompute 2 vs 0 on cuda: files differing [bf16]",
            "training: --recompute 1 vs 0 on cuda: files differing [bf16, llama]",
            "resume bf16 -> fp32 on cuda",
            // The Llama family: its ops in every precision, its training and resumes in fp32 and bf16.
            "rmsnorm ops, width not a multiple of 8 [loops, bf16]", "rope_backward [small, tf32]",
            "swiglu_backward [loops, bf16]",
            "linear_forward, [out, in] weight, unaligned [loops, tf32]", "encoder_forward, no position table [small]",
            "training: 20 losses vs cpu [bf16, llama]", "resume on cuda: files differing [llama]",
            "resume cpu -> cuda: losses [bf16, llama]",
            // Grouped key/value heads inside the attention kernels: flash in fp32, on tensor cores in
            // tf32 and bf16, and the kept scores (heads of 96).
            "attention_forward, grouped (KV = NH/2) [small]", "attention_backward, grouped (KV = NH/2) [loops]",
            "attention_backward, multi-query (KV = 1) [small, tf32]",
            "attention_backward, grouped (KV = NH/2) [loops, bf16]",
            "attention_backward, multi-query (KV = 1) [wide heads]",
        ] {
            XCTAssert(result.stdout.contains(row), "selftest row '\(row)' missing")
        }
        // Flash attention: GPT-2 124M at batch 32, T 1024 needs at least the scores' 19 GB less.
        let memory = try XCTUnwrap(
            result.stdout.split(separator: "\n").first { $0.hasPrefix("memory: activations of GPT-2 124M") },
            result.stdout)
        // The four "N GB" figures: here, its attention, with the scores kept, their attention.
        let words = memory.split(separator: " ")
        let figures = zip(words, words.dropFirst()).compactMap { $1.hasPrefix("GB") ? Double($0) : nil }
        XCTAssertEqual(figures.count, 4, String(memory))
        if figures.count == 4 {
            XCTAssertGreaterThanOrEqual(
                figures[2] - figures[0], 19, "activations with flash attention against with the scores kept: \(memory)")
            XCTAssertLessThan(figures[1], 0.1, "flash attention keeps only per-row statistics: \(memory)")
        }
        // --recompute 1 and 2: less, and less again (float32 figures first).
        let recomputed = try XCTUnwrap(
            result.stdout.split(separator: "\n").first { $0.hasPrefix("memory: the same at --recompute 1 and 2") },
            result.stdout)
        let recomputedWords = recomputed.split(separator: " ")
        let levels = zip(recomputedWords, recomputedWords.dropFirst()).compactMap {
            $1.hasPrefix("GB") ? Double($0) : nil
        }
        XCTAssertEqual(levels.count, 4, String(recomputed))
        if levels.count == 4, figures.count == 4 {
            XCTAssert(figures[0] > levels[0] && levels[0] > levels[1], String(recomputed))
        }
    }

    /// A training step runs the fused ops, not the separate kernels they replace: every linear layer
    /// is one cuBLASLt matmul with its bias (and GELU) in the epilogue, the MLP's GELU gradient is
    /// in one too, and each residual add is fused with the LayerNorm after it. The emulator traces
    /// each launch and cuBLAS call (BATON_EMULATOR_TRACE=1), so a fused op that quietly falls back shows.
    func testATrainingStepRunsTheFusedKernels() throws {
        let library = try builtEmulator()
        let layers = 3
        func tracedBench(steps: Int) throws -> ProcessResult {
            let shape = ["--layers", "\(layers)", "--heads", "2", "--embd", "32", "--seq-len", "16", "--batch", "2"]
            return try runBaton(
                ["bench", "--device", "cuda", "--precision", "fp32", "--vocab-size", "64", "--steps", "\(steps)"]
                    + shape + ["--warmup-steps", "0"],
                environment: ["BATON_CUDA_LIBRARY": library.path, "BATON_EMULATOR_TRACE": "1"])
        }
        let result = try tracedBench(steps: 1)
        XCTAssertEqual(result.status, 0, result.stderr)
        let calls = result.stderr.split(separator: "\n").compactMap { line -> String? in
            line.hasPrefix("cuda emulator trace: ") ? String(line.dropFirst("cuda emulator trace: ".count)) : nil
        }
        // A kernel templated over the activations' type is traced as name<Act>.
        func count(_ call: String) -> Int { calls.filter { $0 == call || $0.hasPrefix(call + "<") }.count }
        XCTAssertEqual(count("cublas cublasLtMatmul BIAS"), 3 * layers, "qkv, attention projection, MLP projection")
        XCTAssertEqual(count("cublas cublasLtMatmul GELU_AUX_BIAS"), layers)
        XCTAssertEqual(count("cublas cublasLtMatmul DGELU"), layers)
        XCTAssertEqual(count("launch residual_layernorm_forward_kernel"), 2 * layers)
        XCTAssertEqual(count("launch layernorm_forward_kernel"), 1, "only the first block's ln_1 stands alone")
        XCTAssertEqual(count("launch add_kernel"), 0, "a residual add ran apart from its LayerNorm")
        XCTAssertEqual(count("launch flash_forward_kernel"), layers, "fp32 attention on CUDA cores")
        XCTAssertFalse(calls.contains { $0.hasPrefix("launch flash_forward_tc_kernel") })
        // cuBLASLt's heuristic is asked once per call shape (and alignment), then its answer kept:
        // three steps ask it no more than one.
        let queries = count("cublas cublasLtMatmulAlgoGetHeuristic")
        XCTAssertGreaterThan(queries, 0)
        XCTAssertLessThan(queries, 5 * layers, "fewer queries than one step's cuBLASLt calls")
        let threeSteps = try tracedBench(steps: 3)
        XCTAssertEqual(threeSteps.status, 0, threeSteps.stderr)
        XCTAssertEqual(
            threeSteps.stderr.components(separatedBy: "cublas cublasLtMatmulAlgoGetHeuristic\n").count - 1, queries,
            "the heuristic asked again in later steps")

        // In bf16 and tf32 the attention kernels are the tensor-core ones, forward and backward.
        for precision in ["bf16", "tf32"] {
            let run = try runBaton(
                [
                    "bench", "--device", "cuda", "--precision", precision, "--layers", "\(layers)", "--heads", "2",
                    "--embd", "32",
                    "--seq-len", "16", "--batch", "2", "--vocab-size", "64", "--steps", "1", "--warmup-steps", "0",
                ],
                environment: ["BATON_CUDA_LIBRARY": library.path, "BATON_EMULATOR_TRACE": "1"])
            XCTAssertEqual(run.status, 0, run.stderr)
            let launches = run.stderr.split(separator: "\n").filter { $0.hasPrefix("cuda emulator trace: launch ") }
            for kernel in [
                "flash_forward_tc_kernel<", "flash_backward_dkdv_tc_kernel<", "flash_backward_dq_tc_kernel<",
            ] {
                XCTAssertEqual(launches.filter { $0.contains(kernel) }.count, layers, "\(kernel) in \(precision)")
            }
            XCTAssertFalse(
                launches.contains { $0.hasSuffix("launch flash_forward_kernel") },
                "\(precision) attention on CUDA cores")
            // bf16 stores activations in bf16: the matmuls are bf16 ones, and the weights' bf16 copy is made once a
            // forward pass.
            let gemms = run.stderr.split(separator: "\n").filter {
                $0.hasPrefix("cuda emulator trace: cublas cublasGemmEx")
            }
            XCTAssertFalse(gemms.isEmpty, run.stderr)
            XCTAssert(gemms.allSatisfy { $0.hasSuffix(" bf16") == (precision == "bf16") }, "\(precision): \(gemms)")
            XCTAssertEqual(
                launches.filter { $0.contains("to_activation_kernel<") }.count, precision == "bf16" ? 1 : 0,
                "\(precision): the weights' copy once a forward pass (the residual gradient's copies come with "
                    + "LayerNorm's backward)"
            )
        }
    }

    /// Without --precision a new run takes its device's default: bf16 on a GPU of sm_80 or newer
    /// (the emulator says 9.0), recorded in the run's config so a resume on the CPU keeps it; fp32
    /// on the CPU. An explicit --precision wins.
    func testTheDefaultPrecisionIsBF16OnAGPUAndFP32OnTheCPU() throws {
        let library = try builtEmulator()
        let folder = try TestPaths.temporaryFolder("default-precision")
        func train(_ name: String, _ extra: [String]) throws -> (stdout: String, precision: String?) {
            let run = folder.appendingPathComponent(name)
            let result = try runBaton(
                [
                    "train", "--layers", "1", "--heads", "2", "--embd", "32", "--seq-len", "16", "--batch", "2",
                    "--steps", "2",
                    "--eval-every", "0", "--save-every", "1", "--out", run.path,
                ] + extra,
                environment: ["BATON_CUDA_LIBRARY": library.path])
            XCTAssertEqual(result.status, 0, result.stderr)
            let record =
                try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("config.json")))
                as? [String: Any]
            return (result.stdout, (record?["config"] as? [String: Any])?["precision"] as? String)
        }
        let gpu = try train("gpu", ["--device", "cuda"])
        XCTAssert(gpu.stdout.contains("precision: bf16 by default"), gpu.stdout)
        XCTAssertEqual(gpu.precision, "bf16")
        let cpu = try train("cpu", ["--device", "cpu"])
        XCTAssertFalse(cpu.stdout.contains("by default"), cpu.stdout)
        XCTAssertNil(cpu.precision, "fp32")
        XCTAssertEqual(try train("chosen", ["--device", "cuda", "--precision", "fp32"]).precision, "fp32")
        // The GPU run, resumed on the CPU for two more steps, stays bf16 (no change to print).
        let resumed = try runBaton([
            "train", "--resume", "auto", "--out", folder.appendingPathComponent("gpu").path, "--steps", "4", "--device",
            "cpu",
        ])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssert(resumed.stdout.contains("precision: bf16"), resumed.stdout)
        XCTAssertFalse(resumed.stdout.contains("precision changed"), resumed.stdout)
    }

    /// On a GPU without bf16 tensor cores (the emulator made a 7.5 card) a new run's default is
    /// fp32, and --precision bf16 is refused in one line naming the card and what to use instead.
    func testAGPUBelowSM80RefusesBF16AndDefaultsToFP32() throws {
        let library = try builtEmulator()
        let folder = try TestPaths.temporaryFolder("sm75")
        let environment = ["BATON_CUDA_LIBRARY": library.path, "BATON_EMULATOR_COMPUTE_CAPABILITY": "7.5"]
        let tiny = [
            "--layers", "1", "--heads", "2", "--embd", "32", "--seq-len", "16", "--batch", "2", "--steps", "1",
            "--eval-every", "0",
            "--device", "cuda",
        ]
        let plain = try runBaton(
            ["train", "--out", folder.appendingPathComponent("plain").path] + tiny, environment: environment)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stdout.contains("precision: bf16"), plain.stdout)
        let refused = try runBaton(
            ["train", "--out", folder.appendingPathComponent("bf16").path, "--precision", "bf16"] + tiny,
            environment: environment)
        XCTAssertEqual(refused.status, 1, refused.stdout)
        let lines = refused.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, refused.stderr)
        XCTAssert(
            refused.stderr.contains("compute capability 8.0 or newer") && refused.stderr.contains("7.5")
                && refused.stderr.contains("--precision fp32"),
            refused.stderr)
    }

    /// A training step reads nothing back from the device between its forward and backward passes:
    /// the micro-batches' losses stay there until the step's end, read with one copy, and the
    /// gradient norm (for clipping) is the other. A copy at the end of each forward pass would make
    /// the host wait for the GPU before it could queue the backward pass.
    func testATrainingStepReadsTheDeviceTwice() throws {
        let library = try builtEmulator()
        let run = try TestPaths.temporaryFolder("two-reads")
        let result = try runBaton(
            [
                "train", "--device", "cuda", "--layers", "2", "--heads", "2", "--embd", "32", "--seq-len", "16",
                "--batch", "2", "--grad-accum", "3", "--steps", "1", "--eval-every", "0", "--save-every", "0",
                "--out", run.path,
            ],
            environment: ["BATON_CUDA_LIBRARY": library.path, "BATON_EMULATOR_TRACE": "1"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let calls = result.stderr.split(separator: "\n").filter { $0.hasPrefix("cuda emulator trace: ") }.map {
            String($0.dropFirst(21))
        }
        // The step: from its first kernel to AdamW's.
        let first = try XCTUnwrap(calls.firstIndex(of: "launch encoder_forward_kernel"), result.stderr)
        let update = try XCTUnwrap(calls.firstIndex(of: "launch adamw_kernel"), result.stderr)
        let step = calls[first..<update]
        XCTAssertEqual(
            step.filter { $0.hasPrefix("launch softmax_crossentropy_kernel<") }.count, 3, "three micro-batches")
        XCTAssertEqual(
            step.filter { $0 == "memcpy device to host" }.count, 2, "the losses once, the gradient norm once")
        let lastBackward = try XCTUnwrap(step.lastIndex(of: "launch encoder_backward_wte_kernel"))
        XCTAssertNil(
            step[..<lastBackward].firstIndex(of: "memcpy device to host"), "a read before the last backward pass")
        // A micro-batch's tokens, targets and buckets come from pinned memory: no upload drains the queue.
        XCTAssertFalse(
            step.contains { $0.hasPrefix("memcpy host to device (pageable") }, "a pageable upload inside the step")
        XCTAssert(
            step.contains("memcpy host to device (pinned, async)"), "the micro-batches' uploads are pinned and async")
    }

    /// The emulator refuses what a GPU refuses (launch limits, cuBLAS argument rules) and reports
    /// what is undefined on one (divergent barriers, shuffles with exited lanes, out-of-bounds
    /// access), and computes right what is right.
    func testTheEmulatorEnforcesTheGPUsRules() throws {
        _ = try builtEmulator()
        let rules = CUDABackendTests.emulatorFolder.appendingPathComponent("emulator-rules")
        let output = Pipe()
        let process = Process()
        process.executableURL = rules
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, text)
        XCTAssert(text.contains("24 passed, 0 failed"), text)
    }

    /// A CUDA kernel that walks off its buffer is caught on the CPU: the emulator's guard pages
    /// stop the process at the access and the message names the kernel.
    func testAnOutOfBoundsKernelIsCaughtByTheEmulator() throws {
        _ = try builtEmulator()
        let folder = try TestPaths.temporaryFolder("oob-kernel")
        defer { try? FileManager.default.removeItem(at: folder) }
        // A copy of the kernels with encoder_forward's bounds check off by one.
        let root = TestPaths.repositoryRoot.path
        XCTAssertEqual(
            shell(
                "mkdir -p '\(folder.path)/Kernels' && cp -r '\(root)/Kernels/.' '\(folder.path)/Kernels/' && mkdir "
                    + "-p '\(folder.path)/scripts/setup' "
                    + "&& cp '\(root)/scripts/setup/build-cuda-emulator' '\(folder.path)/scripts/setup/' && mkdir "
                    + "-p '\(folder.path)/Sources' "
                    + "&& cp -r '\(root)/Sources/CBatonABI' '\(folder.path)/Sources/' && mkdir -p "
                    + "'\(folder.path)/Tests' "
                    + "&& cp -r '\(root)/Tests/CUDAEmulator' '\(folder.path)/Tests/'"), 0)
        let encoder = folder.appendingPathComponent("Kernels/encoder.cu")
        let source = try String(contentsOf: encoder, encoding: .utf8)
        let broken = source.replacingOccurrences(
            of: "if (i >= (long long)B * T * C) return;", with: "if (i > (long long)B * T * C) return;")
        XCTAssertNotEqual(source, broken, "the mutation must apply")
        try broken.write(to: encoder, atomically: true, encoding: .utf8)
        XCTAssertEqual(shell("'\(folder.path)/scripts/setup/build-cuda-emulator' >/dev/null"), 0)
        let result = try runBaton(
            ["selftest", "--device", "cuda"],
            environment: [
                "BATON_CUDA_LIBRARY": folder.appendingPathComponent(".build-cuda-emulator/libbaton_cuda.so").path
            ])
        XCTAssertNotEqual(result.status, 0)
        XCTAssert(result.stderr.contains("illegal memory access in encoder_forward_kernel"), result.stderr)
    }

    /// The promise across backends, through the command line, with "cuda" on the emulator: a run
    /// stopped on cuda and resumed on cuda ends with the same bytes as an uninterrupted cuda run;
    /// stopped on one backend and resumed on the other, every later loss is within 1e-4 of the
    /// uninterrupted run on the backend it resumed on. In fp32 on both (a GPU's default is bf16:
    /// testTheDefaultPrecisionIsBF16OnAGPUAndFP32OnTheCPU; the selftest resumes across backends in
    /// every precision).
    func testStopAndResumeAcrossBackendsOnTheCommandLine() throws {
        let library = try builtEmulator().path
        let folder = try TestPaths.temporaryFolder("cross-backend")
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = try makeTinyShards(in: folder)
        let common = [
            "--data", data, "--layers", "1", "--heads", "2", "--embd", "32", "--seq-len", "8", "--batch", "4",
            "--warmup", "3",
            "--lr", "3e-3", "--eval-every", "0", "--eval-batches", "2", "--log-every", "100", "--steps", "30",
            "--precision", "fp32",
        ]
        func train(_ run: String, _ device: String, _ extra: [String]) throws {
            let result = try runBaton(
                ["train", "--out", folder.appendingPathComponent(run).path, "--device", device] + common + extra,
                environment: ["BATON_CUDA_LIBRARY": library])
            XCTAssertEqual(result.status, 0, "\(run) on \(device): \(result.stderr)")
        }
        func losses(_ run: String) throws -> [Float] {
            try MetricsLog.read(folder.appendingPathComponent(run).appendingPathComponent("metrics.jsonl")).map(\.loss)
        }
        func file(_ run: String, _ name: String) throws -> Data {
            try Data(
                contentsOf: CheckpointStore(runFolder: folder.appendingPathComponent(run)).url(step: 30)
                    .appendingPathComponent(name))
        }
        try train("cuda", "cuda", [])
        try train("cpu", "cpu", [])
        for (run, first, second) in [
            ("cuda-cuda", "cuda", "cuda"), ("cuda-cpu", "cuda", "cpu"), ("cpu-cuda", "cpu", "cuda"),
        ] {
            try train(run, first, ["--stop-at", "13"])
            try train(run, second, ["--resume", "auto"])
        }
        XCTAssertEqual(try file("cuda-cuda", "model.safetensors"), try file("cuda", "model.safetensors"))
        XCTAssertEqual(try file("cuda-cuda", "optimizer.safetensors"), try file("cuda", "optimizer.safetensors"))
        XCTAssertEqual(try losses("cuda-cuda"), try losses("cuda"))
        for (run, reference) in [("cuda-cpu", "cpu"), ("cpu-cuda", "cuda")] {
            let resumed = try losses(run), straight = try losses(reference)
            XCTAssertEqual(resumed.count, 30)
            assertClose(
                Array(resumed.suffix(17)), Array(straight.suffix(17)), rtol: 1e-4, "\(run) against \(reference)")
        }
    }
}
