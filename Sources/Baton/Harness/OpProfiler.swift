import Foundation

/// Time per op, for `baton bench --profile`: with a profiler attached, a Device waits for each op
/// to finish and adds the time from its launch to its end to the op's row. Waiting after every op
/// removes the overlap of launching and running, so the total is above an unprofiled step's (the
/// bench prints both); what it gives is where the time goes, op by op — on a GPU the measurement
/// that replaces docs/gpu-performance-model.md's predictions.
public final class OpProfiler {
    public struct Row {
        public let op: String
        public internal(set) var calls: Int
        public internal(set) var seconds: Double
    }

    private var rows: [String: Row] = [:]
    /// The profiled steps' wall time, measured around them by the caller, not summed from the
    /// rows: the ops run one after another inside it, so their total is at most this.
    public var wallSeconds: Double?

    public init() {}

    func record(_ op: String, seconds: Double) {
        rows[op, default: Row(op: op, calls: 0, seconds: 0)].calls += 1
        rows[op, default: Row(op: op, calls: 0, seconds: 0)].seconds += seconds
    }

    public func reset() {
        rows = [:]
        wallSeconds = nil
    }

    /// The rows, most time first.
    public var byTime: [Row] { rows.values.sorted { ($0.seconds, $1.op) > ($1.seconds, $0.op) } }

    /// A table: each op's calls and milliseconds per step and its share of the ops' total.
    public func report(steps: Int) -> [String] {
        let total = rows.values.reduce(0) { $0 + $1.seconds }
        func name(_ text: String) -> String { text.padding(toLength: max(32, text.count), withPad: " ", startingAt: 0) }
        var lines = [name("op") + " calls/step    ms/step   share"]
        for row in byTime {
            lines.append(
                name(row.op)
                    + String(
                        format: " %10.1f %10.3f %6.1f%%", Double(row.calls) / Double(steps),
                        row.seconds * 1000 / Double(steps), total > 0 ? 100 * row.seconds / total : 0))
        }
        lines.append(
            name("all ops") + String(repeating: " ", count: 11)
                + String(format: " %10.3f", total * 1000 / Double(steps)))
        if let wallSeconds {
            lines.append(
                name("wall time of the steps") + String(repeating: " ", count: 11)
                    + String(format: " %10.3f", wallSeconds * 1000 / Double(steps)))
        }
        return lines
    }
}
