/// A step's gradient summed over the ranks of a job. With `exact` and a power-of-two world size,
/// ranks are combined by recursive doubling — at distance 1, 2, 4, ... each rank exchanges its sum
/// with its partner and adds — which continues GradientTree's pairwise tree across ranks: the
/// result has the bits one process gets from all the micro-batches, at any power-of-two world
/// size. Otherwise (`fast`, or 3 or 6 ranks) the library's all-reduce, exact only up to float
/// rounding. GPU ranks with an NCCL communicator do the same on GPU memory (ncclSend/ncclRecv for
/// the tree, ncclAllReduce for fast); without one, a GPU's gradient goes through host memory.
public final class DataParallel {
    public let communicator: Communicator
    /// Set from the run's config (`reduce`) by the Trainer that uses it.
    public internal(set) var exact: Bool
    public let deviceCommunicator: DeviceCommunicator?
    private var host: [Float] = []
    private var received: [Float] = []
    private var receivedOnDevice: Tensor?

    public init(communicator: Communicator, exact: Bool = true, deviceCommunicator: DeviceCommunicator? = nil) {
        self.communicator = communicator
        self.exact = exact
        self.deviceCommunicator = deviceCommunicator
    }

    /// How gradients are summed, for the start-up line.
    public var summary: String {
        let library = deviceCommunicator.map { "NCCL \($0.version)" } ?? "MPI"
        return usesTree ? "exactly (pairwise tree) over \(library)" : "by \(library)'s all-reduce"
    }

    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }
    public var usesTree: Bool { exact && size & (size - 1) == 0 }

    /// Sums `model.gradients` over the ranks in place, and returns every rank's micro-batch losses
    /// in rank order (each rank gives as many). With ZeRO-1's `slices` and the library's sum
    /// (`fast`), a reduce-scatter: only this rank's slice of the gradient is summed (the rest is
    /// left undefined). The exact tree always sums the whole gradient, so that the global norm
    /// has the bits of one process's.
    func reduce(model: GPT, losses: [Float], slices: OptimizerSlices? = nil) throws -> [Float] {
        let all = try communicator.allgather(losses)
        if let slices, !usesTree, size > 1 {
            try reduceScatterSum(model.gradients, slices, on: model.device)
            return all
        }
        // With NCCL, a job of one rank still goes through it (scripts/checks/gpu-check runs NCCL that way).
        if size > 1 || deviceCommunicator != nil { try sum(model.gradients, on: model.device) }
        return all
    }

    /// Sums `tensor` over the ranks, in place, on every rank. On the CPU the tensor's own memory
    /// is sent and summed into; a GPU's goes through NCCL when there is a device communicator, else
    /// through a host copy.
    public func sum(_ tensor: Tensor, on device: Device) throws {
        if let deviceCommunicator, !device.hostMemory {
            try sumOnDevice(tensor, device: device, communicator: deviceCommunicator)
            return
        }
        if device.hostMemory {
            try sum(UnsafeMutableBufferPointer(start: tensor.pointer, count: tensor.count))
            return
        }
        if host.count != tensor.count { host = [Float](repeating: 0, count: tensor.count) }
        try host.withUnsafeMutableBufferPointer { try device.download(tensor, into: $0) }
        try host.withUnsafeMutableBufferPointer { try sum($0) }
        try host.withUnsafeBufferPointer { try device.upload($0, to: tensor) }
    }

    /// The same tree as on the host, on GPU memory: the partner's sum arrives in a second
    /// gradient-sized buffer, and the add is the residual kernel (one float addition an element,
    /// the same bits as the host loop).
    private func sumOnDevice(_ tensor: Tensor, device: Device, communicator: DeviceCommunicator) throws {
        guard usesTree else { return try communicator.allreduceSum(tensor) }
        if receivedOnDevice?.count != tensor.count { receivedOnDevice = try device.allocate(floats: tensor.count) }
        let received = receivedOnDevice!
        try forEachPartner { partner in
            try communicator.exchange(tensor, into: received, with: partner)
            try device.add(out: tensor, a: tensor, b: received)
        }
    }

    private func sum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        guard usesTree else { return try communicator.allreduceSum(values) }
        if received.count != values.count { received = [Float](repeating: 0, count: values.count) }
        try forEachPartner { partner in
            try received.withUnsafeMutableBytes {
                try communicator.exchange(UnsafeRawBufferPointer(values), into: $0, with: partner)
            }
            // Float addition commutes, so both partners get the same bits.
            received.withUnsafeBufferPointer { theirs in
                for i in 0..<values.count { values[i] = values[i] + theirs[i] }
            }
        }
    }

    /// Recursive doubling's partners in order: at distance 1, 2, 4, ... the rank that differs in
    /// that bit. Each exchanges its running sum with this rank and adds it.
    private func forEachPartner(_ combine: (Int) throws -> Void) rethrows {
        var distance = 1
        while distance < size {
            try combine(rank ^ distance)
            distance *= 2
        }
    }
}
