import Foundation
import XCTest

@testable import Baton

/// Asserts |actual - expected| <= rtol * max|expected| elementwise: a relative tolerance scaled
/// to the tensor's magnitude, so entries near zero are not held to an impossible standard.
func assertClose(
    _ actual: [Float], _ expected: [Float], rtol: Float, _ what: String, file: StaticString = #filePath,
    line: UInt = #line
) {
    XCTAssertEqual(actual.count, expected.count, "\(what): sizes differ", file: file, line: line)
    let scale = max(expected.map { abs($0) }.max() ?? 0, 1e-12)
    let (worst, worstIndex) = worstError(actual, expected)
    XCTAssert(
        worst <= rtol * scale,
        "\(what): max error \(worst) at \(worstIndex) (actual \(actual[worstIndex]), expected "
            + "\(expected[worstIndex])) exceeds \(rtol) x \(scale)",
        file: file, line: line)
}

/// assertClose's max |actual - expected| over the common length and where it is: NaN at the first
/// NaN error, which no later element may replace (NaN fails the check).
func worstError(_ actual: [Float], _ expected: [Float]) -> (error: Float, index: Int) {
    var worst: Float = 0, worstIndex = 0
    for i in 0..<min(actual.count, expected.count) {
        let error = abs(actual[i] - expected[i])
        if error.isNaN { return (.nan, i) }
        if error > worst { worst = error; worstIndex = i }
    }
    return (worst, worstIndex)
}

enum TestPaths {
    /// This file is Tests/BatonTestSupport/TestSupport.swift.
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let fixtures = repositoryRoot.appendingPathComponent("Tests/BatonTests/Fixtures")

    /// The `baton` executable built beside the test bundle.
    static var batonExecutable: URL {
        var folder = Bundle.main.bundleURL
        if folder.pathExtension == "xctest" { folder = folder.deletingLastPathComponent() }
        return folder.appendingPathComponent("baton")
    }

    static func temporaryFolder(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "baton-tests-\(getpid())-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

struct ProcessResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// `baton` under `mpirun -np ranks` (alone for 0), from the repository root, with `environment`
/// added (and the variables in `removing` taken away) and passed to every rank; its output in
/// files under `scratch`. Stopped if it outlives `seconds` (timedOut then).
func runBatonJob(
    ranks: Int, _ arguments: [String], environment: [String: String], scratch: URL,
    seconds: Double = 120, executable: URL = TestPaths.batonExecutable,
    removing removed: Set<String> = []
) throws -> (result: ProcessResult, timedOut: Bool) {
    let process = Process()
    process.executableURL = ranks == 0 ? executable : URL(fileURLWithPath: "/usr/bin/mpirun")
    process.arguments =
        ranks == 0
        ? arguments
        : ["--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)"]
            + environment.keys.sorted().flatMap { ["-x", $0] }
            + [executable.path] + arguments
    process.currentDirectoryURL = TestPaths.repositoryRoot
    process.environment = inheritedEnvironment.merging(environment) { $1 }.filter { !removed.contains($0.key) }
    let tag = UUID().uuidString.prefix(6)
    let out = scratch.appendingPathComponent("out-\(tag)"), err = scratch.appendingPathComponent("err-\(tag)")
    FileManager.default.createFile(atPath: out.path, contents: nil)
    FileManager.default.createFile(atPath: err.path, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: out)
    process.standardError = try FileHandle(forWritingTo: err)
    try process.run()
    let deadline = Date().addingTimeInterval(seconds)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    let timedOut = process.isRunning
    if timedOut { process.terminate() }
    process.waitUntilExit()
    let result = ProcessResult(
        status: process.terminationStatus, stdout: try String(contentsOf: out, encoding: .utf8),
        stderr: try String(contentsOf: err, encoding: .utf8))
    return (result, timedOut)
}

/// This process's environment for a child `baton`, less BATON_CUDA_LIBRARY: set around the suite
/// (scripts/checks/gpu-check exports it) it would turn every `--device auto` run into a CUDA one; a test
/// that means a CUDA backend passes the library it means.
var inheritedEnvironment: [String: String] {
    ProcessInfo.processInfo.environment.filter { $0.key != "BATON_CUDA_LIBRARY" }
}

/// Why this host looks like it has an NVIDIA GPU (the driver's device node or its /proc entry), or
/// nil: a test that expects CUDA to fail for want of a GPU skips there, saying this.
var nvidiaGPUPresent: String? {
    for path in ["/dev/nvidia0", "/proc/driver/nvidia/gpus"] where FileManager.default.fileExists(atPath: path) {
        return "this host has an NVIDIA GPU (\(path) exists)"
    }
    return nil
}

/// Runs the built `baton` with arguments, in `folder` (default: the repository root).
func runBaton(
    _ arguments: [String], in folder: URL = TestPaths.repositoryRoot, environment extra: [String: String] = [:]
) throws -> ProcessResult {
    let process = Process()
    process.executableURL = TestPaths.batonExecutable
    process.arguments = arguments
    process.currentDirectoryURL = folder
    process.environment = inheritedEnvironment.merging(extra) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read both pipes before waiting so a chatty child cannot fill a pipe and block.
    final class Box: @unchecked Sendable { var data = Data() }
    let errBox = Box()
    let group = DispatchGroup()
    group.enter()
    let errHandle = err.fileHandleForReading
    DispatchQueue.global().async {
        errBox.data = errHandle.readDataToEndOfFile(); group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    return ProcessResult(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errBox.data, as: UTF8.self))
}

/// Runs `baton` with `arguments`; a failure to exit 0 fails the test, naming the command.
@discardableResult
func runBatonExpectingSuccess(
    _ arguments: [String], file: StaticString = #filePath, line: UInt = #line
) throws
    -> ProcessResult
{
    let result = try runBaton(arguments)
    XCTAssertEqual(
        result.status, 0, "baton \(arguments.joined(separator: " ")) failed: \(result.stderr)", file: file, line: line)
    return result
}

/// The bundled text (data/paradise-lost.txt), its first `characters`.
func bundledText(prefix characters: Int) throws -> String {
    let url = TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt")
    return String(try String(contentsOf: url, encoding: .utf8).prefix(characters))
}

/// A command that failed in one line on stderr, naming each of `expected`.
func assertFailsInOneLine(
    _ result: ProcessResult, mentioning expected: [String], file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertNotEqual(result.status, 0, file: file, line: line)
    XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr, file: file, line: line)
    for text in expected {
        XCTAssert(result.stderr.contains(text), "'\(text)' missing: \(result.stderr)", file: file, line: line)
    }
}

/// A folder of tiny shards from the bundled text: by default 48 training windows of 8+1 tokens
/// (with batch 4, an epoch is 12 steps) and 12 validation windows. Returns the folder's path.
func makeTinyShards(in folder: URL, train: Int = 385, validation: Int = 100, name: String = "t") throws -> String {
    let text = try Data(contentsOf: TestPaths.repositoryRoot.appendingPathComponent("data/paradise-lost.txt"))
    let shards = folder.appendingPathComponent("shards")
    try FileManager.default.createDirectory(at: shards, withIntermediateDirectories: true)
    let trainFile = shards.appendingPathComponent("\(name)_train_000000.bin")
    try TokenShard.write(tokens: text.prefix(train).map { UInt16($0) }, to: trainFile)
    let validationFile = shards.appendingPathComponent("\(name)_val_000000.bin")
    try TokenShard.write(tokens: text.dropFirst(train).prefix(validation).map { UInt16($0) }, to: validationFile)
    return shards.path
}

/// Saves a checkpoint of `model` and `optimizer` at `step` into `run`, as training would;
/// `midSave` is the save's fault hook.
@discardableResult
func saveCheckpoint(
    _ model: GPT, _ optimizer: AdamW, run: URL, step: Int, midSave: ((Int, URL) throws -> Void)? = nil
) throws -> URL {
    var training = TrainingConfig()
    training.model = model.config
    return try CheckpointStore(runFolder: run).save(
        step: step,
        tensors: CheckpointTensors(
            device: model.device, parameters: model.parameters, firstMoment: optimizer.firstMoment,
            secondMoment: optimizer.secondMoment),
        layout: model.layout,
        describe: {
            CheckpointState(
                state: TrainingState(), config: training,
                data: DataFingerprint(train: TokenDataset(shards: [], sequenceLength: 8), val: nil),
                backend: model.device.kind.rawValue, files: $0)
        },
        overwrite: false, midSave: midSave, log: { _ in })
}

/// Writes a token shard with a chosen header, for the bad-input tests.
func writeRawShard(
    _ url: URL, magic: Int32 = TokenShard.magic, version: Int32 = TokenShard.version, count: Int32, tokens: [UInt16]
) throws {
    var header = [Int32](repeating: 0, count: 256)
    header[0] = magic; header[1] = version; header[2] = count
    var data = Data()
    header.withUnsafeBufferPointer { data.append(UnsafeRawBufferPointer($0).bindMemory(to: UInt8.self)) }
    tokens.withUnsafeBufferPointer { data.append(UnsafeRawBufferPointer($0).bindMemory(to: UInt8.self)) }
    try data.write(to: url)
}

/// Runs `command` with /bin/sh, its output discarded; its exit status (-1 if it cannot start).
@discardableResult
func shell(_ command: String) -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command + " >/dev/null 2>&1"]
    do { try process.run() } catch { return -1 }
    process.waitUntilExit()
    return process.terminationStatus
}

/// Flips one bit of the byte at `offset` in the file: damage a checksum must catch.
func flipByte(in url: URL, at offset: Int) throws {
    var data = try Data(contentsOf: url)
    data[offset] ^= 0x40
    try data.write(to: url)
}

/// Cuts the last `count` bytes off the file.
func truncate(_ url: URL, by count: Int) throws {
    let data = try Data(contentsOf: url)
    try data.prefix(data.count - count).write(to: url)
}

/// GPT-2's tokenizer (data/gpt2-tokenizer), loaded once for every test that needs it.
nonisolated(unsafe) let gpt2Tokenizer = try! BPETokenizer(
    folder: TestPaths.repositoryRoot.appendingPathComponent("data/gpt2-tokenizer"))
