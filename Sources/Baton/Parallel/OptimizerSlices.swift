/// ZeRO-1 (`--zero 1`): the flat parameter buffer of `total` floats cut into one contiguous slice
/// per rank, in rank order, each `length` = ceil(total / ranks) long but the last, which takes what
/// is left (shorter; nothing is padded). Each rank keeps AdamW's moments for its slice alone and
/// updates only those parameters; the ranks then all-gather the updated slices.
public struct OptimizerSlices: Equatable, Sendable {
    public let total: Int
    public let ranks: Int
    /// Every slice's length but the last's.
    public let length: Int

    public init(total: Int, ranks: Int) {
        precondition(total > 0 && ranks > 0)
        self.total = total
        self.ranks = ranks
        length = (total + ranks - 1) / ranks
    }

    /// One slice: the whole buffer (`--zero 0`, or one rank).
    public static func whole(_ total: Int) -> OptimizerSlices { OptimizerSlices(total: total, ranks: 1) }

    /// The elements of the flat buffer `rank` owns (empty for a rank past the end).
    public func range(of rank: Int) -> Range<Int> {
        let start = min(rank * length, total)
        return start..<min(start + length, total)
    }

    /// The decay ranges (sorted, disjoint, in the flat buffer) that fall in `slice`, shifted to
    /// start at it: so that an AdamW call over a slice applies each element its own decay rule,
    /// wherever the slice's edges cut a tensor.
    public static func ranges(_ ranges: [Range<Int>], within slice: Range<Int>) -> [Range<Int>] {
        ranges.compactMap { range in
            let clamped = range.clamped(to: slice)
            return clamped.isEmpty
                ? nil : (clamped.lowerBound - slice.lowerBound)..<(clamped.upperBound - slice.lowerBound)
        }
    }
}
