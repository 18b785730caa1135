/// ZeRO-1's collectives on the flat buffers (OptimizerSlices): the all-gather of updated
/// parameters after each step, the reduce-scatter of gradients under `--reduce fast`, and the
/// gradient norm from slices. On the
/// CPU the tensors' own memory is sent; a GPU's goes through NCCL when there is a device
/// communicator, else through a host copy.
extension DataParallel {
    /// Each rank's slice of `tensor` (the full flat buffer) to every rank, in place.
    public func allgatherSlices(_ tensor: Tensor, _ slices: OptimizerSlices, on device: Device) throws {
        guard size > 1 else { return }
        if let deviceCommunicator, !device.hostMemory {
            return try deviceCommunicator.allgatherSlices(tensor, slices)
        }
        try throughHost(tensor, on: device) { try communicator.allgatherSlices($0, slices) }
    }

    /// The library's sum of `tensor` over the ranks, each rank keeping its slice's.
    func reduceScatterSum(_ tensor: Tensor, _ slices: OptimizerSlices, on device: Device) throws {
        if let deviceCommunicator, !device.hostMemory {
            return try deviceCommunicator.reduceScatterSum(tensor, slices)
        }
        try throughHost(tensor, on: device) { try communicator.reduceScatterSum($0, slices) }
    }

    /// The sum of squares of the whole gradient when each rank holds its slice's sum: each rank's
    /// slice's, gathered and added in rank order, so every rank has the same value.
    func normSquared(ofSlicesOf gradients: Tensor, _ slices: OptimizerSlices, on device: Device) throws -> Float {
        let mine = slices.range(of: rank)
        let local = mine.isEmpty ? 0 : try device.globalNormSquared(gradients.slice(mine.lowerBound, mine.count))
        var total: Float = 0
        for part in try communicator.allgather([local]) { total += part }
        return total
    }

    /// Runs `body` on `tensor`'s values in host memory, writing them back on a GPU.
    private func throughHost(
        _ tensor: Tensor, on device: Device, _ body: (UnsafeMutableBufferPointer<Float>) throws -> Void
    ) throws {
        if device.hostMemory { return try body(UnsafeMutableBufferPointer(start: tensor.pointer, count: tensor.count)) }
        var host = try device.download(tensor)
        try host.withUnsafeMutableBufferPointer { try body($0) }
        try host.withUnsafeBufferPointer { try device.upload($0, to: tensor) }
    }
}
