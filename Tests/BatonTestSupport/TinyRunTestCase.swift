import Foundation
import XCTest

@testable import Baton

/// A test class whose tests each get a fresh temporary folder, removed after the test.
class FolderTestCase: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try TestPaths.temporaryFolder(String(describing: type(of: self))) }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }
}

/// A test class whose tests train tiny runs of the `baton` binary: each test's folder holds the
/// tiny shards (`makeTinyShards`: 48 training windows of 8+1 tokens, 12 validation ones).
class TinyRunTestCase: FolderTestCase {
    /// The tiny shards' folder, for `--data`.
    var data: String!

    override func setUpWithError() throws {
        try super.setUpWithError()
        data = try makeTinyShards(in: folder)
    }

    /// The tiny model on the tiny shards: 1 layer, 2 heads, 16 channels, context 8.
    var tinyModel: [String] { ["--data", data, "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len", "8"] }

    /// The CPU with 2 threads (the bits do not depend on the count).
    let onCPU = ["--device", "cpu", "--threads", "2"]

    /// Runs `baton` with `arguments`; a failure to exit 0 fails the test, naming the command.
    @discardableResult
    func baton(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> ProcessResult {
        try runBatonExpectingSuccess(arguments, file: file, line: line)
    }
}
