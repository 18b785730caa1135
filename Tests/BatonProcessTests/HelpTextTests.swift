import Foundation
import XCTest

@testable import BatonTestSupport

/// What every command's --help prints is part of what users see: it changes only on purpose.
/// The committed copies in Fixtures/help/ are written by scripts/fixtures/update-help.
final class HelpTextTests: XCTestCase {
    func testEveryCommandsHelpMatchesTheCommittedCopy() throws {
        let folder = TestPaths.repositoryRoot.appendingPathComponent("Tests/BatonTests/Fixtures/help")
        let main = try runBaton(["--help"])
        XCTAssertEqual(main.status, 0)
        let commands = main.stdout.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("  "), let word = line.split(separator: " ").first else { return nil }
            return String(word)
        }
        XCTAssertGreaterThanOrEqual(commands.count, 11, "baton --help lists the commands")
        let committed = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".txt") }
            .sorted()
        XCTAssertEqual(
            committed, (["baton"] + commands).map { "\($0).txt" }.sorted(),
            "one committed copy per command; run scripts/fixtures/update-help after adding or removing one")
        for (name, arguments) in [("baton", ["--help"])] + commands.map({ ($0, [$0, "--help"]) }) {
            let result = try runBaton(arguments)
            XCTAssertEqual(result.status, 0, name)
            let expected = try String(contentsOf: folder.appendingPathComponent("\(name).txt"), encoding: .utf8)
            XCTAssertEqual(
                result.stdout, expected,
                "baton \(arguments.joined(separator: " ")) changed; if that is meant, run "
                    + "scripts/fixtures/update-help and commit"
            )
        }
    }
}
