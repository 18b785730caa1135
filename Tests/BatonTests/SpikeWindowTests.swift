import XCTest

@testable import Baton

/// The spike guards' window: no z-score in the warm-up, the z-score of a value against the
/// window before it, the oldest value dropped, non-finite values left out.
final class SpikeWindowTests: XCTestCase {
    func testNoScoreUntilTheWindowIsFull() {
        var window = SpikeWindow()
        for i in 0..<(SpikeWindow.length - 1) {
            window.push(Float(i % 3))
            XCTAssertNil(window.zScore(of: 100), "after \(i + 1) values")
        }
        window.push(1)
        XCTAssertNotNil(window.zScore(of: 100))
    }

    func testTheScoreIsAgainstTheValuesBeforeIt() {
        // Half 1s, half 3s: mean 2, population standard deviation 1.
        let window = SpikeWindow(values: (0..<SpikeWindow.length).map { Float($0 % 2 == 0 ? 1 : 3) })
        XCTAssertEqual(window.zScore(of: 7), 5)
        XCTAssertEqual(window.zScore(of: 2), 0)
        XCTAssertEqual(window.zScore(of: 0.5), -1.5)
        XCTAssertNil(window.zScore(of: .nan))
        XCTAssertNil(window.zScore(of: .infinity))
        XCTAssertEqual(SpikeWindow(values: Array(repeating: 2, count: SpikeWindow.length)).zScore(of: 9), 0)
    }

    func testPushKeepsTheNewestFiniteValues() {
        var window = SpikeWindow()
        for i in 0..<(SpikeWindow.length + 5) { window.push(Float(i)) }
        window.push(.nan)
        window.push(-.infinity)
        XCTAssertEqual(window.values, (5..<(SpikeWindow.length + 5)).map(Float.init))
        XCTAssertEqual(SpikeWindow(values: (0..<300).map(Float.init)).values.first, 300 - Float(SpikeWindow.length))
    }

    func testTheVerdictNamesTheGuardThatSkips() {
        let window = SpikeWindow(values: (0..<SpikeWindow.length).map { Float($0 % 2 == 0 ? 1 : 3) })
        let both = SpikeVerdict(
            loss: 8, gradientNorm: 9, lossWindow: window, gradientWindow: window, lossLimit: 5, gradientLimit: 5)
        XCTAssertEqual(both.reason, "the loss's z-score is 6.00 > --skip-loss-z 5.0")
        let gradientOnly = SpikeVerdict(
            loss: 8, gradientNorm: 9, lossWindow: window, gradientWindow: window, lossLimit: nil, gradientLimit: 5)
        XCTAssertEqual(gradientOnly.reason, "the gradient norm's z-score is 7.00 > --skip-grad-z 5.0")
        let below = SpikeVerdict(
            loss: 6.9, gradientNorm: 7, lossWindow: window, gradientWindow: window, lossLimit: 5, gradientLimit: 5)
        XCTAssertNil(below.reason, "a z-score of exactly the limit is not above it")
        let off = SpikeVerdict(
            loss: 80, gradientNorm: 90, lossWindow: window, gradientWindow: window, lossLimit: 0, gradientLimit: 0)
        XCTAssertNil(off.reason, "0 turns a guard off, as llm.c's -sl 0")
        XCTAssertEqual(below.lossZ ?? 0, 4.9, accuracy: 1e-6)
    }
}
