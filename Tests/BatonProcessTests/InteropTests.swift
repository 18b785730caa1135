import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// The checkpoint files as someone else's code reads them: Python's own safetensors package.
final class InteropTests: XCTestCase {
    func testPythonSafetensorsReadsBothCheckpointFiles() throws {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import safetensors.numpy"]
        probe.standardError = FileHandle.nullDevice
        try probe.run()
        probe.waitUntilExit()
        try XCTSkipIf(
            probe.terminationStatus != 0,
            "skipped: Python's safetensors package is not installed (scripts/setup/install-deps installs it)")

        let run = try TestPaths.temporaryFolder("interop")
        defer { try? FileManager.default.removeItem(at: run) }
        let config = GPTConfig(contextLength: 8, vocabularySize: 16, layers: 2, heads: 2, channels: 8)
        let device = Device.cpu()
        let model = try GPT(config: config, device: device)
        try model.initializeParameters(seed: 5)
        let optimizer = try AdamW(model: model, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0.1)
        try device.fill(optimizer.firstMoment, with: 0.25)
        try device.fill(optimizer.secondMoment, with: 0.5)
        let url = try saveCheckpoint(model, optimizer, run: run, step: 3)
        let script = """
            import sys
            from safetensors.numpy import load_file
            m = load_file(sys.argv[1] + "/model.safetensors")
            o = load_file(sys.argv[1] + "/optimizer.safetensors")
            w = m["transformer.h.1.attn.c_attn.weight"]
            moment = o["transformer.wte.weight.exp_avg_sq"]
            print(len(m), len(o), w.shape[0], w.shape[1], repr(float(w[3, 17])), repr(float(moment[0, 0])))
            """
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", script, url.path]
        let pipe = Pipe()
        python.standardOutput = pipe
        try python.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        python.waitUntilExit()
        XCTAssertEqual(python.terminationStatus, 0)
        let fields = output.split(separator: " ").map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
        let weight = try device.download(model.parameter("transformer.h.1.attn.c_attn.weight"))[3 * 24 + 17]
        XCTAssertEqual(
            Array(fields.prefix(4)), ["\(model.layout.specs.count)", "\(2 * model.layout.specs.count)", "8", "24"])
        XCTAssertEqual(Float(fields[4]), weight, "Python reads the same value at [3, 17] of the (in, out) weight")
        XCTAssertEqual(Float(fields[5]), 0.5)
    }
}
