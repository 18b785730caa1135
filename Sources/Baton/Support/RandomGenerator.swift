/// A small deterministic generator (SplitMix64) whose whole state is one UInt64, so it can be
/// written to a checkpoint and restored exactly.
public struct RandomGenerator: RandomNumberGenerator, Codable, Equatable, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUniform() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Standard normal by Box-Muller (one value per call, so the stream position is simple).
    public mutating func nextNormal() -> Double {
        let u1 = max(nextUniform(), Double.leastNonzeroMagnitude)
        let u2 = nextUniform()
        return (-2.0 * _log(u1)).squareRoot() * _cos(2.0 * Double.pi * u2)
    }

    /// A seed derived from this seed and extra values, for independent streams (one per epoch).
    public static func derive(_ seed: UInt64, _ values: UInt64...) -> UInt64 {
        var generator = RandomGenerator(seed: seed)
        var mixed = generator.next()
        for value in values {
            generator = RandomGenerator(seed: mixed ^ (value &* 0xD6E8_FEB8_6659_FD93))
            mixed = generator.next()
        }
        return mixed
    }
}

#if canImport(Glibc)
import Glibc
private func _log(_ x: Double) -> Double { Glibc.log(x) }
private func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Foundation
private func _log(_ x: Double) -> Double { Foundation.log(x) }
private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
#endif
