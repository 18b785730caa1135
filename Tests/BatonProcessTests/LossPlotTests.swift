import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

#if canImport(FoundationXML)
import FoundationXML
#endif

/// `baton plot`: the SVG is well-formed XML with one group per run, whose faint training curve
/// has one point per metrics row and whose validation points are the rows with a val loss.
final class LossPlotTests: XCTestCase {
    final class Collector: NSObject, XMLParserDelegate {
        var runs: [(name: String, rawPoints: Int, declared: Int, smoothedPoints: Int, validation: Int)] = []
        func parser(
            _ parser: XMLParser, didStartElement element: String, namespaceURI: String?, qualifiedName: String?,
            attributes: [String: String] = [:]
        ) {
            switch (element, attributes["class"]) {
            case ("g", "run"): runs.append((attributes["data-run"] ?? "", 0, 0, 0, 0))
            case ("polyline", "train-raw"):
                runs[runs.count - 1].rawPoints = (attributes["points"] ?? "").split(separator: " ").count
                runs[runs.count - 1].declared = Int(attributes["data-points"] ?? "") ?? -1
            case ("polyline", "train-smoothed"):
                runs[runs.count - 1].smoothedPoints = (attributes["points"] ?? "").split(separator: " ").count
            case ("circle", "val"): runs[runs.count - 1].validation += 1
            default: break
            }
        }
    }

    func testTheSVGHoldsOneSeriesPerRunWithOnePointPerStep() throws {
        let folder = try TestPaths.temporaryFolder("plot")
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = try makeTinyShards(in: folder)
        var runs: [String] = []
        for (name, steps) in [("small", 14), ("large & <odd>", 9)] {
            let run = folder.appendingPathComponent(name).path
            let result = try runBaton([
                "train", "--data", data, "--out", run, "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len",
                "8",
                "--batch", "4", "--steps", "\(steps)", "--eval-every", "5", "--eval-batches", "1", "--device", "cpu",
            ])
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssert(result.stdout.contains("plot the losses with: baton plot \(run) --out"), result.stdout)
            runs.append(run)
        }
        for extra in [[], ["--x", "tokens", "--log-y"]] {
            let svg = folder.appendingPathComponent("loss.svg")
            let plotted = try runBaton(["plot"] + runs + ["--out", svg.path] + extra)
            XCTAssertEqual(plotted.status, 0, plotted.stderr)
            let parser = try XCTUnwrap(XMLParser(contentsOf: svg))
            let collector = Collector()
            parser.delegate = collector
            XCTAssert(parser.parse(), "the SVG must be well-formed XML: \(parser.parserError.map { "\($0)" } ?? "")")
            XCTAssertEqual(collector.runs.map(\.name), ["small", "large & <odd>"])
            for (run, (steps, validations)) in zip(collector.runs, [(14, 3), (9, 2)]) {  // val at 5, 10, end; at 5, end
                XCTAssertEqual(run.rawPoints, steps, run.name)
                XCTAssertEqual(run.declared, steps, run.name)
                XCTAssertEqual(run.smoothedPoints, steps, run.name)
                XCTAssertEqual(run.validation, validations, run.name)
            }
        }
        let missing = try runBaton(["plot", folder.path, "--out", folder.appendingPathComponent("x.svg").path])
        XCTAssertEqual(missing.status, 1)
        XCTAssert(missing.stderr.contains("no metrics.jsonl"), missing.stderr)
    }

    /// --out inside a run it reads (its metrics.jsonl, its config.json, a new file; through `..`
    /// or a symbolic link), or inside any folder holding a run: a usage error naming --out, and
    /// the run is untouched. An existing --out that is not an SVG: one line naming --out, the file
    /// untouched. An existing SVG is replaced.
    func testOutNeverEntersARunNorReplacesANonSVG() throws {
        let folder = try TestPaths.temporaryFolder("plot-out")
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = try makeTinyShards(in: folder)
        let run = folder.appendingPathComponent("run")
        let trained = try runBaton([
            "train", "--data", data, "--out", run.path, "--layers", "1", "--heads", "2", "--embd", "16", "--seq-len",
            "8",
            "--batch", "4", "--steps", "3", "--eval-batches", "1", "--device", "cpu",
        ])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        func contents(_ url: URL) throws -> [String: Data] {
            var files: [String: Data] = [:]
            let walker = try XCTUnwrap(FileManager.default.enumerator(atPath: url.path))
            while let name = walker.nextObject() as? String {
                var isFolder: ObjCBool = false
                if FileManager.default.fileExists(
                    atPath: url.appendingPathComponent(name).path, isDirectory: &isFolder), !isFolder.boolValue
                {
                    files[name] = try Data(contentsOf: url.appendingPathComponent(name))
                }
            }
            return files
        }
        let before = try contents(run)
        XCTAssertNotNil(before["metrics.jsonl"])
        let link = folder.appendingPathComponent("link")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: run)
        let other = folder.appendingPathComponent("other-run")  // a run not given as input
        try FileManager.default.createDirectory(
            at: other.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
        let checkpoint = try XCTUnwrap(
            CheckpointStore(runFolder: run).steps().last.map { CheckpointStore(runFolder: run).url(step: $0) })
        for out in [
            run.path + "/metrics.jsonl", run.path + "/config.json", run.path, folder.path + "/x/../run/metrics.jsonl",
            link.path + "/metrics.jsonl", link.path, other.path + "/checkpoints", run.path + "/checkpoints/x.svg",
            checkpoint.path + "/loss.svg",
        ] {
            let result = try runBaton(["plot", run.path, "--out", out])
            XCTAssertEqual(result.status, 2, "--out \(out): \(result.stderr)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
            XCTAssert(result.stderr.contains("--out"), result.stderr)
        }
        XCTAssert(try contents(run) == before, "the run is untouched")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: other.path), ["checkpoints"])
        // At any depth inside a dataset or an export, or inside a checkpoint copied out of its run.
        let prepared = folder.appendingPathComponent("prepared")
        let text = folder.appendingPathComponent("text.txt")
        try Data(String(repeating: "Of Man's first disobedience. ", count: 40).utf8).write(to: text)
        XCTAssertEqual(
            try runBaton(["prepare", text.path, "--out", prepared.path, "--tokenizer", "gpt2", "--threads", "1"])
                .status, 0)
        let copied = folder.appendingPathComponent("copied-checkpoint")
        try FileManager.default.copyItem(at: checkpoint, to: copied)
        for out in [prepared.path + "/tokenizer/x.svg", prepared.path + "/x.svg", copied.path + "/x.svg"] {
            let result = try runBaton(["plot", run.path, "--out", out])
            XCTAssertEqual(result.status, 2, "--out \(out): \(result.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        }
        // Beside the run's own files, the command train prints: a new SVG, then replaced.
        for _ in 0..<2 {
            let beside = try runBaton(["plot", run.path, "--out", run.path + "/loss.svg"])
            XCTAssertEqual(beside.status, 0, beside.stderr)
        }
        XCTAssertEqual(Set(try contents(run).keys), Set(before.keys).union(["loss.svg"]))
        XCTAssert(try contents(run).filter { $0.key != "loss.svg" } == before, "the run's own files are untouched")

        let plots = folder.appendingPathComponent("plots")
        try FileManager.default.createDirectory(at: plots, withIntermediateDirectories: true)
        let notes = plots.appendingPathComponent("notes.svg")
        try Data("my notes, not a picture".utf8).write(to: notes)
        let refused = try runBaton(["plot", run.path, "--out", notes.path])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssert(refused.stderr.contains("--out") && refused.stderr.contains("not an SVG"), refused.stderr)
        XCTAssertEqual(try String(contentsOf: notes, encoding: .utf8), "my notes, not a picture")

        let svg = plots.appendingPathComponent("loss.svg")
        for _ in 0..<2 {  // written, then replaced
            let plotted = try runBaton(["plot", run.path, "--out", svg.path])
            XCTAssertEqual(plotted.status, 0, plotted.stderr)
        }
        XCTAssert(try String(contentsOf: svg, encoding: .utf8).hasPrefix("<?xml"))
    }
}
