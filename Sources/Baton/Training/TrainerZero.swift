/// The Trainer's part of ZeRO-1 (`--zero 1`): which slice of the parameters this rank's
/// optimizer holds, the start-up line, and whole moments on rank 0 for a checkpoint, which keeps
/// today's format (and so loads at any world size, with or without --zero).
extension Trainer {
    /// This rank's slice with --zero 1 over several ranks; nil (the whole buffer) otherwise: at
    /// one rank ZeRO-1 is the unsharded run.
    static func zeroSlice(config: TrainingConfig, model: GPT, options: RunOptions) -> Range<Int>? {
        guard config.zero == 1, let parallel = options.parallel, parallel.size > 1 else { return nil }
        return OptimizerSlices(total: model.layout.totalCount, ranks: parallel.size).range(of: parallel.rank)
    }

    /// "optimizer: N MiB per rank (--zero 1, slice of K parameters)", for rank 0's slice (the
    /// largest: only the last rank's may be shorter).
    var zeroSummary: String {
        let mebibytes = Double(optimizer.stateBytes) / Double(1 << 20)
        return "optimizer: \(String(format: "%.2f", mebibytes)) MiB per rank (--zero 1, slice of "
            + "\(optimizer.slice.count) parameters of \(model.layout.totalCount), \(worldSize) "
            + "rank\(worldSize == 1 ? "" : "s"))"
    }

    /// Every rank's slice of both moments, gathered whole on rank 0 (nil elsewhere, and without
    /// ZeRO-1). Every rank calls it together before a save.
    func gatherMomentsForSaving() throws -> (Tensor, Tensor)? {
        guard let parallel = options.parallel, optimizer.isSliced else { return nil }
        let slices = OptimizerSlices(total: model.layout.totalCount, ranks: parallel.size)
        let first = try parallel.gatherSlices(optimizer.firstMoment, slices, on: model.device)
        let second = try parallel.gatherSlices(optimizer.secondMoment, slices, on: model.device)
        guard let first, let second else { return nil }
        return (first, second)
    }
}
