import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `baton plot`: loss curves as a plain SVG that any browser opens. Per run: the training loss of
/// every step (faint), its exponential moving average (solid), and the validation losses
/// (points), in one colour, with a legend; x by step or by tokens, y linear or log.
public enum LossPlot {
    public enum XAxis: String, Sendable { case step, tokens }

    public struct Series {
        public let name: String
        public let metrics: [StepMetrics]
        /// Tokens per optimizer step, for the tokens axis.
        public let tokensPerStep: Int
        public init(name: String, metrics: [StepMetrics], tokensPerStep: Int) {
            self.name = name
            self.metrics = metrics
            self.tokensPerStep = tokensPerStep
        }
    }

    /// A run folder's metrics and its tokens per step (from config.json).
    public static func series(runFolder: URL) throws -> Series {
        let run = RunFolder(url: runFolder)
        guard FileManager.default.fileExists(atPath: run.metricsURL.path) else {
            throw BatonError("\(runFolder.path): no metrics.jsonl; give a run folder that has trained")
        }
        let metrics = try MetricsLog.read(run.metricsURL)
        return Series(
            name: runFolder.lastPathComponent, metrics: metrics, tokensPerStep: run.readConfig()?.tokensPerStep ?? 0)
    }

    // MARK: where --out may be

    /// Names a run folder uses for itself; a plot never takes one of them.
    static let runEntries: Set<String> = ["config.json", "metrics.jsonl", "checkpoints", ".lock"]

    /// What `baton plot` may write to: a new file or an SVG (checkReplaceable) anywhere but where
    /// a run, a checkpoint, an export or a dataset keeps its own files. Refused, as a usage error
    /// (exit 2) naming --out: a run folder itself, a name a run uses for itself (config.json,
    /// metrics.jsonl, checkpoints, .lock) in a folder that holds a run, anything inside a run's
    /// checkpoints/ or a checkpoint (state.json beside model.safetensors), and anything at any
    /// depth inside an export or a dataset folder (whose next --overwrite would then refuse it). `RUN/loss.svg`, the
    /// command train prints, is
    /// fine: a run reads only its own names. Paths are compared after resolving links and `..`.
    /// Returns the canonical path to write.
    public static func checkOutput(_ out: URL, runs: [URL]) throws -> URL {
        let target = URL(fileURLWithPath: FilePaths.canonical(out))
        let fileManager = FileManager.default
        func refuse(_ why: String) -> BatonError {
            .invalidFlag(
                flag: "--out",
                message: "--out \(out.path) \(why); choose another path (RUN/loss.svg, or a folder of plots)")
        }
        func holdsRun(_ folder: URL) -> Bool {
            ["config.json", "metrics.jsonl", "checkpoints"].contains {
                fileManager.fileExists(atPath: folder.appendingPathComponent($0).path)
            }
        }
        for run in runs where FilePaths.canonical(run) == target.path {
            throw refuse("is the run folder \(run.path) the plot reads")
        }
        if holdsRun(target) { throw refuse("is a run folder") }
        let parent = target.deletingLastPathComponent()
        if runEntries.contains(target.lastPathComponent)
            && (holdsRun(parent) || runs.contains { FilePaths.canonical($0) == parent.path })
        {
            throw refuse("is the run's own \(target.lastPathComponent)")
        }
        func has(_ folder: URL, _ name: String) -> Bool {
            fileManager.fileExists(atPath: folder.appendingPathComponent(name).path)
        }
        var above = parent
        while above.path != "/" {
            for marker in [".baton-export", ".baton-dataset"] where has(above, marker) {
                throw refuse("lies inside \(above.path), an export or a dataset (\(marker))")
            }
            if has(above, "dataset.json")
                && ((try? fileManager.contentsOfDirectory(atPath: above.path)) ?? []).contains(where: {
                    $0.hasSuffix(".bin")
                })
            {
                throw refuse("lies inside the dataset \(above.path)")
            }
            if has(above, "state.json") && has(above, "model.safetensors") {
                throw refuse("lies inside the checkpoint \(above.path)")
            }
            if above.lastPathComponent == "checkpoints" && holdsRun(above.deletingLastPathComponent()) {
                throw refuse("lies inside the run's checkpoints folder \(above.path)")
            }
            above.deleteLastPathComponent()
        }
        return target
    }

    /// An existing `--out` is replaced only when it is an SVG: a regular file that starts (after
    /// an optional byte-order mark and white space) with `<svg`, or with `<?xml` and has `<svg` in
    /// its first 4 KiB. Anything else is refused in one line naming --out (exit 1).
    public static func checkReplaceable(_ out: URL, as given: String) throws {
        var info = stat()
        guard lstat(out.path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw BatonError("--out \(given) exists and is not a file; choose another --out")
        }
        let head: Data
        do {
            let handle = try FileHandle(forReadingFrom: out)
            defer { try? handle.close() }
            head = try handle.read(upToCount: 4096) ?? Data()
        } catch {
            throw BatonError("--out \(given) exists and cannot be read to check it is an SVG; choose another --out")
        }
        var bytes = head[...]
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        let text = String(decoding: bytes, as: UTF8.self).drop { $0.isWhitespace }
        let isSVG = text.hasPrefix("<svg") || (text.hasPrefix("<?xml") && text.contains("<svg"))
        guard isSVG else {
            throw BatonError(
                "--out \(given) exists and is not an SVG; plot replaces only an SVG: choose another --out or move "
                    + "it away"
            )
        }
    }

    static let colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    public static func svg(
        _ runs: [Series], x axis: XAxis = .step, logY: Bool = false, smoothing: Double = 0.9
    ) throws -> String {
        let width: Double = 960, height: Double = 540, left: Double = 70, right: Double = 190, top: Double = 40,
            bottom: Double = 60
        let plotWidth: Double = width - left - right, plotHeight: Double = height - top - bottom
        func xValue(_ m: StepMetrics, _ run: Series) -> Double {
            axis == .step ? Double(m.step) : Double(m.step * run.tokensPerStep)
        }
        var finiteLosses: [Double] = []
        for run in runs {
            for m in run.metrics {
                for value in [m.loss, m.valLoss ?? .nan] where value.isFinite && (!logY || value > 0) {
                    finiteLosses.append(Double(value))
                }
            }
        }
        guard !finiteLosses.isEmpty else { throw BatonError("baton plot: no finite losses to plot") }
        var xs: [Double] = []
        for run in runs { for m in run.metrics { xs.append(xValue(m, run)) } }
        let xMin: Double = min(xs.min() ?? 0, 0)
        let xMax: Double = max(xs.max() ?? 1, xMin + 1)
        var yMin = finiteLosses.min()!, yMax = finiteLosses.max()!
        if yMax - yMin < 1e-6 { yMin -= 0.5; yMax += 0.5 }
        let transform: (Double) -> Double = logY ? { log10($0) } : { $0 }
        let (ty0, ty1) = (transform(yMin), transform(yMax))
        let pad: Double = (ty1 - ty0) * 0.05
        let lo: Double = ty0 - pad, hi: Double = ty1 + pad
        func px(_ x: Double) -> Double {
            let fraction: Double = (x - xMin) / (xMax - xMin)
            return left + fraction * plotWidth
        }
        func py(_ y: Double) -> Double {
            let fraction: Double = (transform(y) - lo) / (hi - lo)
            return top + (1 - fraction) * plotHeight
        }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var out = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(f(left))" y="24" font-size="16">Loss by \(axis == .step ? "step" : "tokens seen")\
            \(logY ? " (log scale)" : "")</text>

            """
        // Axes, grid and ticks.
        out +=
            "<g class=\"axes\" stroke=\"#888\" fill=\"none\"><rect x=\"\(f(left))\" y=\"\(f(top))\" "
            + "width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\"/></g>\n"
        for tick in niceTicks(xMin, xMax, count: 6) {
            let x = px(tick)
            out +=
                "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + plotHeight))\" stroke=\"#eee\"/>"
            out +=
                "<text x=\"\(f(x))\" y=\"\(f(top + plotHeight + 18))\" text-anchor=\"middle\">\(label(tick))</text>\n"
        }
        let yTicks = logY ? logTicks(yMin, yMax) : niceTicks(yMin, yMax, count: 6)
        for tick in yTicks where transform(tick) >= lo && transform(tick) <= hi {
            let y = py(tick)
            out +=
                "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y))\" stroke=\"#eee\"/>"
            out += "<text x=\"\(f(left - 8))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(label(tick))</text>\n"
        }
        out +=
            "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 16))\" "
            + "text-anchor=\"middle\">\(axis == .step ? "step" : "tokens")</text>\n"
        out +=
            "<text transform=\"translate(18 \(f(top + plotHeight / 2))) rotate(-90)\" "
            + "text-anchor=\"middle\">loss</text>\n"
        // One group per run.
        for (index, run) in runs.enumerated() {
            let colour = colours[index % colours.count]
            let usable = run.metrics.filter { $0.loss.isFinite && (!logY || $0.loss > 0) }
            var smoothed: [Double] = []
            var average: Double?
            for m in usable {
                average = average.map { smoothing * $0 + (1 - smoothing) * Double(m.loss) } ?? Double(m.loss)
                smoothed.append(average!)
            }
            let raw = usable.map { "\(f(px(xValue($0, run)))),\(f(py(Double($0.loss))))" }.joined(separator: " ")
            let smooth = zip(usable, smoothed).map { "\(f(px(xValue($0, run)))),\(f(py($1)))" }.joined(separator: " ")
            out += "<g class=\"run\" data-run=\"\(escape(run.name))\">\n"
            out +=
                "<polyline class=\"train-raw\" data-points=\"\(usable.count)\" fill=\"none\" stroke=\"\(colour)\" "
                + "stroke-opacity=\"0.25\" stroke-width=\"1\" points=\"\(raw)\"/>\n"
            out +=
                "<polyline class=\"train-smoothed\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" "
                + "points=\"\(smooth)\"/>\n"
            for m in run.metrics {
                guard let val = m.valLoss, val.isFinite, !logY || val > 0 else { continue }
                out +=
                    "<circle class=\"val\" cx=\"\(f(px(xValue(m, run))))\" cy=\"\(f(py(Double(val))))\" r=\"4\" "
                    + "fill=\"white\" stroke=\"\(colour)\" stroke-width=\"2\"/>\n"
            }
            let legendY = top + 16 + Double(index) * 40
            out +=
                "<line x1=\"\(f(width - right + 16))\" y1=\"\(f(legendY))\" x2=\"\(f(width - right + 40))\" "
                + "y2=\"\(f(legendY))\" stroke=\"\(colour)\" stroke-width=\"2\"/>"
            out += "<text x=\"\(f(width - right + 46))\" y=\"\(f(legendY + 4))\">\(escape(run.name))</text>\n"
            out +=
                "<text x=\"\(f(width - right + 46))\" y=\"\(f(legendY + 20))\" fill=\"#666\" font-size=\"10\">train "
                + "(faint: raw), o val</text>\n"
            out += "</g>\n"
        }
        out += "</svg>\n"
        return out
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func label(_ value: Double) -> String {
        let magnitude = abs(value)
        if magnitude >= 1e6 { return String(format: "%gM", value / 1e6) }
        if magnitude >= 1e4 { return String(format: "%gk", value / 1e3) }
        return String(format: "%g", (value * 1e4).rounded() / 1e4)
    }

    /// About `count` round values (1, 2 or 5 times a power of ten apart) covering [low, high].
    static func niceTicks(_ low: Double, _ high: Double, count: Int) -> [Double] {
        let rough = (high - low) / Double(max(count - 1, 1))
        let power = pow(10, floor(log10(rough)))
        let step = [1.0, 2.0, 5.0, 10.0].map { $0 * power }.first { $0 >= rough } ?? 10 * power
        var ticks: [Double] = []
        var tick = ceil(low / step) * step
        while tick <= high + step * 1e-9 { ticks.append(tick); tick += step }
        return ticks
    }

    static func logTicks(_ low: Double, _ high: Double) -> [Double] {
        var ticks: [Double] = []
        var decade = pow(10, floor(log10(low)))
        while decade <= high * 10 {
            for m in [1.0, 2.0, 5.0] where m * decade >= low * 0.9 && m * decade <= high * 1.1 {
                ticks.append(m * decade)
            }
            decade *= 10
        }
        return ticks.count >= 2 ? ticks : niceTicks(low, high, count: 5)
    }
}
