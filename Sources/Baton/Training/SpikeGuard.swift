/// llm.c's outlier detector (`-sl`, `-sg`): a running window of the last 128 values of a step's
/// loss or gradient norm, and how many standard deviations a new value lies above its mean.
///
/// Two differences from llm.c, both so that a threshold means what it says and resume stays exact:
/// - the z-score compares the new value with the window of the values before it (llm.c pushes the
///   new value first, which caps any single outlier's z-score near sqrt(127) ≈ 11.3);
/// - the mean and variance are summed afresh from the window in order (llm.c keeps running sums
///   whose rounding drifts), so they are a pure function of the window, which the checkpoint keeps.
/// Like llm.c, every finite value enters the window, a skipped spike included (a lasting shift in
/// the loss becomes the new normal instead of skipping forever); until the window is full
/// (128 values, the warm-up) there is no z-score and nothing is skipped.
public struct SpikeWindow: Equatable, Sendable {
    public static let length = 128

    /// The values, oldest first; at most `length`.
    public private(set) var values: [Float]

    public init(values: [Float] = []) {
        self.values = Array(values.suffix(SpikeWindow.length))
    }

    /// How many standard deviations `value` lies above the window's mean (population standard
    /// deviation, in double precision); nil before the window is full or for a non-finite value;
    /// 0 when the window does not vary.
    public func zScore(of value: Float) -> Double? {
        guard values.count == SpikeWindow.length, value.isFinite else { return nil }
        var sum = 0.0
        for v in values { sum += Double(v) }
        let mean = sum / Double(values.count)
        var squares = 0.0
        for v in values { squares += (Double(v) - mean) * (Double(v) - mean) }
        let deviation = (squares / Double(values.count)).squareRoot()
        return deviation == 0 ? 0 : (Double(value) - mean) / deviation
    }

    /// Adds a finite value, dropping the oldest beyond `length`; a NaN or infinity is left out.
    public mutating func push(_ value: Float) {
        guard value.isFinite else { return }
        values.append(value)
        if values.count > SpikeWindow.length { values.removeFirst(values.count - SpikeWindow.length) }
    }
}

/// The step's verdict from --skip-loss-z and --skip-grad-z.
struct SpikeVerdict {
    let lossZ: Double?
    let gradientZ: Double?
    /// Why the update is skipped ("the loss's z-score is 7.21 > --skip-loss-z 5"), or nil.
    let reason: String?

    /// Judges a step's loss and gradient norm against the windows before them, with the
    /// thresholds (nil or 0: that guard is off, as llm.c's -sl 0 and -sg 0).
    init(
        loss: Float, gradientNorm: Float, lossWindow: SpikeWindow, gradientWindow: SpikeWindow, lossLimit: Float?,
        gradientLimit: Float?
    ) {
        lossZ = lossWindow.zScore(of: loss)
        gradientZ = gradientWindow.zScore(of: gradientNorm)
        if let limit = lossLimit, limit > 0, let z = lossZ, z > Double(limit) {
            reason = "the loss's z-score is \(String(format: "%.2f", z)) > --skip-loss-z \(limit)"
        } else if let limit = gradientLimit, limit > 0, let z = gradientZ, z > Double(limit) {
            reason = "the gradient norm's z-score is \(String(format: "%.2f", z)) > --skip-grad-z \(limit)"
        } else {
            reason = nil
        }
    }
}
