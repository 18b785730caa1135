import Foundation
import XCTest

@testable import BatonTestSupport

/// Every value-taking flag of every command, given a malformed value and, where it has a range, an
/// out-of-range one: a usage error (exit 2) in one line that names the flag, before any work. The
/// flags are read from each command's --help (its CommandSpec), so a new flag is covered as soon
/// as it exists.
final class FlagValueTests: XCTestCase {
    var folder: URL!
    override func setUpWithError() throws { folder = try TestPaths.temporaryFolder("flags") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    static let commands = [
        "train", "sample", "eval", "prepare", "bench", "plot", "export", "checkpoints", "inspect", "selftest",
        "torture",
    ]

    /// Flags whose value is a path or free text (or may be one): no value of theirs is malformed.
    static let freeValues: [String: String] = [
        "--data": "a folder or shard path", "--out": "a path", "--init-from": "a folder path",
        "--sample-ledger": "a file path",
        "--resume": "auto, step-N or any checkpoint path", "--prompt": "free text",
        "--tokenizer": "bytes, gpt2 or any folder path",
        "--name": "a file-name prefix", "--field": "a JSON field name", "--checkpoint": "a folder path",
        "--tokenize": "a file path",
        "--hf": "a folder path", "--work": "a folder path", "--hellaswag": "a file path",
    ]

    /// Placeholders of numbers: none of these flags takes a negative value.
    static let numberPlaceholders: Set<String> = ["N", "B", "K", "M", "T", "C", "V", "S", "X", "STEP"]

    /// Flags for which 0 or a large value is out of range (0 is valid for the others, so giving it
    /// could start work).
    static let outOfRange: [String: [String: [String]]] = [
        "train": [
            "--steps": ["0"], "--epochs": ["0"], "--batch": ["0", "100000"], "--grad-accum": ["0"],
            "--global-batch": ["0"], "--recompute": ["3"],
            "--seq-len": ["0", "100000"], "--layers": ["0", "5000"], "--heads": ["0", "5000"],
            "--embd": ["0", "100000"],
            "--vocab-size": ["0", "2147483648"], "--eval-batches": ["0"], "--log-every": ["0"], "--keep-last": ["0"],
            "--beta1": ["1"], "--beta2": ["1"], "--threads": ["5000"],
        ],
        "bench": [
            "--steps": ["0"], "--batch": ["0"], "--seq-len": ["0"], "--layers": ["0"], "--heads": ["0"],
            "--embd": ["0"],
            "--vocab-size": ["0"], "--threads": ["5000"], "--recompute": ["3"],
        ],
        "eval": ["--sequences": ["0"], "--threads": ["5000"]],
        "sample": ["--threads": ["5000"]],
        "prepare": ["--shard-tokens": ["0", "100"], "--val-tokens": ["0"], "--threads": ["5000"]],
        "plot": ["--smoothing": ["1", "2"]],
        "torture": ["--kills": ["0"], "--ranks": ["0"]],
    ]

    /// Arguments that get each command past its other checks without doing any work: the paths do
    /// not exist, so a flag value that were wrongly accepted fails on them instead, never runs.
    func base(_ command: String) -> [String] {
        let missing = folder.appendingPathComponent("missing").path
        switch command {
        case "train": return ["--data", missing, "--out", folder.appendingPathComponent("run").path]
        case "sample": return [missing]
        case "eval": return [missing, "--data", missing + ".bin"]
        case "prepare":
            return [missing + ".txt", "--out", folder.appendingPathComponent("shards").path, "--tokenizer", "gpt2"]
        case "bench": return ["--tokenize", missing + ".txt"]
        case "plot": return [missing, "--out", folder.appendingPathComponent("x.svg").path]
        case "export": return [missing, "--hf", folder.appendingPathComponent("hf").path]
        case "torture": return ["--work", folder.appendingPathComponent("torture").path]
        default: return []
        }
    }

    /// The value-taking flags a command's --help lists, with their placeholders.
    func valueFlags(_ command: String) throws -> [(flag: String, placeholder: String)] {
        let help = try runBaton([command, "--help"])
        XCTAssertEqual(help.status, 0, help.stderr)
        let lines = help.stdout.components(separatedBy: "options:").last ?? ""
        // Each line: "  --name PLACEHOLDER  help" (a switch has no placeholder); two spaces end the left column.
        return lines.split(separator: "\n").compactMap { line in
            let text = line.trimmingCharacters(in: .whitespaces)
            let left = text.components(separatedBy: "  ").first ?? ""
            let words = left.split(separator: " ").map(String.init)
            guard words.count == 2, words[0].hasPrefix("--") else { return nil }
            return (words[0], words[1])
        }
    }

    func assertUsageError(
        _ command: String, _ flag: String, _ value: String, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let arguments = [command] + base(command) + [flag, value]
        let result = try runBaton(arguments)
        let what = "baton \(arguments.joined(separator: " "))"
        XCTAssertEqual(
            result.status, 2, "\(what): exit \(result.status), stderr: \(result.stderr)", file: file, line: line)
        XCTAssertEqual(
            result.stderr.split(separator: "\n").count, 1, "\(what): one line expected, got: \(result.stderr)",
            file: file, line: line)
        XCTAssert(result.stderr.hasPrefix("baton: error: "), "\(what): \(result.stderr)", file: file, line: line)
        XCTAssert(
            result.stderr.contains(flag), "\(what): the error does not name \(flag): \(result.stderr)", file: file,
            line: line)
    }

    func testEveryMalformedOrOutOfRangeFlagValueIsAUsageError() throws {
        var checked = 0
        for command in Self.commands {
            for (flag, placeholder) in try valueFlags(command) where Self.freeValues[flag] == nil {
                try assertUsageError(command, flag, "abc")
                if Self.numberPlaceholders.contains(placeholder) { try assertUsageError(command, flag, "-5") }
                for value in Self.outOfRange[command]?[flag] ?? [] { try assertUsageError(command, flag, value) }
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 50, "the flags were read from --help")
        // The range list names only flags that exist.
        for (command, flags) in Self.outOfRange {
            let known = Set(try valueFlags(command).map(\.flag))
            for flag in flags.keys { XCTAssert(known.contains(flag), "baton \(command) has no \(flag)") }
        }
    }
}
