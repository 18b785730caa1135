import Foundation
import XCTest
@testable import Baton

/// Asserts |actual - expected| <= rtol * max|expected| elementwise: a relative tolerance scaled
/// to the tensor's magnitude, so entries near zero are not held to an impossible standard.
func assertClose(_ actual: [Float], _ expected: [Float], rtol: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "\(what): sizes differ", file: file, line: line)
    let scale = max(expected.map { abs($0) }.max() ?? 0, 1e-12)
    var worst: Float = 0, worstIndex = 0
    for i in 0..<min(actual.count, expected.count) {
        let error = abs(actual[i] - expected[i])
        if !(error <= worst) { worst = error; worstIndex = i }  // also catches NaN
    }
    XCTAssert(worst <= rtol * scale, "\(what): max error \(worst) at \(worstIndex) (actual \(actual[worstIndex]), expected \(expected[worstIndex])) exceeds \(rtol) x \(scale)", file: file, line: line)
}

enum TestPaths {
    static let testsFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let repositoryRoot = testsFolder.deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = testsFolder.appendingPathComponent("Fixtures")

    /// The `baton` executable built beside the test bundle.
    static var batonExecutable: URL {
        var folder = Bundle.main.bundleURL
        if folder.pathExtension == "xctest" { folder = folder.deletingLastPathComponent() }
        return folder.appendingPathComponent("baton")
    }

    static func temporaryFolder(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("baton-tests-\(getpid())-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

struct ProcessResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs the built `baton` with arguments, in `folder` (default: the repository root).
func runBaton(_ arguments: [String], in folder: URL = TestPaths.repositoryRoot, environment extra: [String: String] = [:]) throws -> ProcessResult {
    let process = Process()
    process.executableURL = TestPaths.batonExecutable
    process.arguments = arguments
    process.currentDirectoryURL = folder
    process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
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
    DispatchQueue.global().async { errBox.data = errHandle.readDataToEndOfFile(); group.leave() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errBox.data, as: UTF8.self))
}

/// Writes a token shard with a chosen header, for the bad-input tests.
func writeRawShard(_ url: URL, magic: Int32 = TokenShard.magic, version: Int32 = TokenShard.version, count: Int32, tokens: [UInt16]) throws {
    var header = [Int32](repeating: 0, count: 256)
    header[0] = magic; header[1] = version; header[2] = count
    var data = Data()
    header.withUnsafeBufferPointer { data.append(UnsafeRawBufferPointer($0).bindMemory(to: UInt8.self)) }
    tokens.withUnsafeBufferPointer { data.append(UnsafeRawBufferPointer($0).bindMemory(to: UInt8.self)) }
    try data.write(to: url)
}
