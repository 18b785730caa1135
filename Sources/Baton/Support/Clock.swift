#if canImport(Glibc)
import Glibc
#endif

/// Monotonic seconds, for throughput and ETA.
public func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
}

/// "1h02m", "3m12s", "45s"
public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let total = Int(seconds.rounded())
    if total >= 3600 { return "\(total / 3600)h\(String(format2(total % 3600 / 60)))m" }
    if total >= 60 { return "\(total / 60)m\(String(format2(total % 60)))s" }
    return "\(total)s"
}

private func format2(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
