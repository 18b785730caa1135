/// Sums the gradients of a step's micro-batches as a balanced pairwise tree over the micro-batch
/// index — ((g0 + g1) + (g2 + g3)), not ((g0 + g1) + g2) + g3 — kept as a binary counter of partial
/// sums (at most log2(count) + 2 gradient buffers, allocated once). Float addition is not
/// associative, so the order is the result: with this one, any split of the micro-batches into
/// contiguous power-of-two blocks, each summed by the same tree (one block per rank, later), and
/// the blocks then added pairwise, gives the same bits as one process summing them all.
final class GradientTree {
    private let model: GPT
    private var free: [Tensor] = []
    private var stack: [(level: Int, sum: Tensor)] = []

    init(model: GPT) { self.model = model }

    /// Starts a step: the model's gradient buffer is zeroed for the first micro-batch.
    func begin() throws {
        precondition(stack.isEmpty)
        try model.zeroGradients()
    }

    /// Takes the gradient the last backward pass left in `model.gradients` as the next leaf, and
    /// gives the model a zeroed buffer for the next one.
    func push() throws {
        var level = 0, sum = model.gradients
        while let top = stack.last, top.level == level {
            stack.removeLast()
            try model.device.add(out: top.sum, a: top.sum, b: sum)  // left + right, into left
            free.append(sum)
            sum = top.sum
            level += 1
        }
        stack.append((level, sum))
        model.gradients = try freeBuffer()
        try model.zeroGradients()
    }

    /// Folds what is left (for counts that are not a power of two: right to left) and leaves the
    /// total in `model.gradients`.
    func finish() throws {
        free.append(model.gradients)
        guard var total = stack.popLast()?.sum else { preconditionFailure("finish() before any push()") }
        while let left = stack.popLast() {
            try model.device.add(out: left.sum, a: left.sum, b: total)
            free.append(total)
            total = left.sum
        }
        model.gradients = total
    }

    private func freeBuffer() throws -> Tensor {
        if let buffer = free.popLast() { return buffer }
        return try model.device.allocate(floats: model.layout.totalCount)
    }
}
