/// The Trainer's part of ZeRO-1 (`--zero 1`): which slice of the parameters this rank's
/// optimizer holds, the start-up line, and the checkpoint save in which each rank writes its
/// slice of the moments into today's format (SlicedMomentWrite).
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

    /// With ZeRO-1 over ranks, the save in which every rank writes its slice of the moments; nil
    /// otherwise (rank 0 writes them whole).
    func makeSlicedMomentWrite() -> SlicedMomentWrite? {
        guard let parallel = options.parallel, optimizer.isSliced else { return nil }
        return SlicedMomentWrite(
            communicator: parallel.communicator, layout: model.layout, device: model.device, optimizer: optimizer)
    }
}
