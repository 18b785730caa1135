/// A step's gradient summed over the ranks of a job. With `exact` and a power-of-two world size,
/// ranks are combined by recursive doubling — at distance 1, 2, 4, ... each rank exchanges its sum
/// with its partner and adds — which continues GradientTree's pairwise tree across ranks: the
/// result has the bits one process gets from all the micro-batches, at any power-of-two world
/// size. Otherwise (`fast`, or 3 or 6 ranks) the library's all-reduce, exact only up to float
/// rounding.
public final class DataParallel {
    public let communicator: Communicator
    public let exact: Bool
    private var host: [Float] = []
    private var received: [Float] = []

    public init(communicator: Communicator, exact: Bool) {
        self.communicator = communicator
        self.exact = exact
    }

    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }
    public var usesTree: Bool { exact && size & (size - 1) == 0 }

    /// Sums `model.gradients` over the ranks in place, and returns every rank's micro-batch losses
    /// in rank order (each rank gives as many).
    func reduce(model: GPT, losses: [Float]) throws -> [Float] {
        let all = try communicator.allgather(losses)
        if size > 1 { try sum(model.gradients, on: model.device) }
        return all
    }

    /// Sums `tensor` over the ranks, in place, on every rank. On the CPU the tensor's own memory
    /// is sent and summed into; a GPU's tensor goes through a host copy (NCCL is to come).
    public func sum(_ tensor: Tensor, on device: Device) throws {
        if device.hostMemory {
            try sum(UnsafeMutableBufferPointer(start: tensor.pointer, count: tensor.count))
            return
        }
        if host.count != tensor.count { host = [Float](repeating: 0, count: tensor.count) }
        try host.withUnsafeMutableBufferPointer { try device.download(tensor, into: $0) }
        try host.withUnsafeMutableBufferPointer { try sum($0) }
        try host.withUnsafeBufferPointer { try device.upload($0, to: tensor) }
    }

    private func sum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        guard usesTree else { return try communicator.allreduceSum(values) }
        if received.count != values.count { received = [Float](repeating: 0, count: values.count) }
        var distance = 1
        while distance < size {
            try received.withUnsafeMutableBytes { try communicator.exchange(UnsafeRawBufferPointer(values), into: $0, with: rank ^ distance) }
            // Float addition commutes, so both partners get the same bits.
            received.withUnsafeBufferPointer { theirs in
                for i in 0..<values.count { values[i] = values[i] + theirs[i] }
            }
            distance *= 2
        }
    }
}
