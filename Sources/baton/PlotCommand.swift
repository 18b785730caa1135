import Baton
import Foundation

let plotSpec = CommandSpec(
    name: "plot", summary: "Draw runs' loss curves (training raw and smoothed, validation points) as an SVG.",
    usage: "baton plot RUN [RUN...] --out FILE.svg [--x step|tokens] [--log-y]",
    options: options(
        """
        --out FILE.svg: the SVG to write (required), e.g. RUN/loss.svg; never a run's own file (config.json,
            metrics.jsonl), nor inside its checkpoints, an export or a dataset; an existing file is replaced only if it
            is an SVG
        --x step|tokens: x axis: optimizer steps (default) or tokens seen
        --log-y: logarithmic loss axis
        --smoothing X: moving-average weight of the smoothed curve, 0 to 1 (default 0.9)
        """), takesArguments: true)

func plotCommand(_ arguments: [String]) throws {
    guard let parsed = try plotSpec.parse(arguments) else { return }
    guard !parsed.positionals.isEmpty else {
        throw UsageError("baton plot: give at least one RUN folder (see baton plot --help)")
    }
    guard let out = parsed.string("--out") else { throw UsageError("baton plot: --out FILE.svg is required") }
    let axisName = parsed.string("--x") ?? "step"
    guard let axis = LossPlot.XAxis(rawValue: axisName) else {
        throw UsageError("baton plot: --x expects step or tokens, got '\(axisName)'")
    }
    let smoothing = Double(try parsed.float("--smoothing") ?? 0.9)
    guard smoothing >= 0 && smoothing < 1 else { throw UsageError("baton plot: --smoothing must be in [0, 1)") }
    let runs = try parsed.positionals.map { try LossPlot.series(runFolder: URL(fileURLWithPath: $0)) }
    // Never a run's own files or checkpoints, an export or a dataset; over a file only if it is an SVG (checked before
    // writing).
    let target = try LossPlot.checkOutput(
        URL(fileURLWithPath: out), runs: parsed.positionals.map { URL(fileURLWithPath: $0) })
    // The SVG is written beside itself first: a missing folder is named here, as the --out path's.
    let outFolder = URL(fileURLWithPath: out).deletingLastPathComponent()
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: outFolder.path, isDirectory: &isFolder), isFolder.boolValue else {
        throw BatonError(
            "--out \(out): the folder \(outFolder.path) does not exist; create it first or choose another --out")
    }
    let svg = try LossPlot.svg(runs, x: axis, logY: parsed.flag("--log-y"), smoothing: smoothing)
    try LossPlot.checkReplaceable(target, as: out)
    try AtomicFile.write(Data(svg.utf8), to: target)
    print(
        "wrote \(out): \(runs.count) run\(runs.count == 1 ? "" : "s"), "
            + "\(runs.map { "\($0.name) (\($0.metrics.count) steps)" }.joined(separator: ", "))"
    )
}
