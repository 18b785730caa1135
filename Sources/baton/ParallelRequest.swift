import Baton
import Foundation

/// The data-parallel flags of `baton train` that are not the run's config: over what ranks
/// exchange gradients (--comm) and how long a collective may wait on a rank (--collective-timeout).
/// How they sum (--reduce) is the run's config (TrainingConfig.reduce).
struct ParallelRequest {
    enum Transport: String { case auto, mpi, nccl }
    let transport: Transport
    let timeoutSeconds: Double

    init(_ parsed: ParsedArguments) throws {
        let comm = parsed.string("--comm") ?? "auto"
        guard let transport = Transport(rawValue: comm) else {
            throw UsageError("baton train: --comm expects auto, mpi or nccl, got '\(comm)'")
        }
        self.transport = transport
        let timeout = try parsed.float("--collective-timeout") ?? 600
        guard timeout >= 0 else { throw UsageError("baton train: --collective-timeout must not be negative") }
        timeoutSeconds = Double(timeout)
    }

    /// The job's MPI communicator when a launcher started this process; a job of one process
    /// when `--comm nccl` asks for NCCL without one; else nil (no data parallelism).
    func joinCommunicator() throws -> Communicator? {
        if let communicator = try Communicator.join() {
            try communicator.setTimeout(seconds: timeoutSeconds)
            return communicator
        }
        return transport == .nccl ? Communicator.single() : nil
    }

    /// GPU ranks use NCCL when `--comm` allows and it loads (auto says why when it does not);
    /// CPU ranks, and `--comm mpi`, reduce through MPI.
    func dataParallel(communicator: Communicator, device: Device, report: (String) -> Void) throws -> DataParallel {
        var deviceCommunicator: DeviceCommunicator?
        if device.kind == .cuda && transport != .mpi {
            do {
                deviceCommunicator = try DeviceCommunicator.join(
                    over: communicator, deviceIndex: launcherLocalRank, timeoutSeconds: timeoutSeconds)
            } catch let error where transport == .auto {
                report("comm: MPI through host memory (NCCL unavailable: \(error))")
            }
        } else if transport == .nccl {
            throw UsageError("baton train: --comm nccl needs GPU ranks (--device cuda); CPU ranks reduce over MPI")
        }
        // How the ranks sum (--reduce) is the run's config, recorded and kept on resume: the
        // Trainer sets it once the config is settled.
        return DataParallel(communicator: communicator, deviceCommunicator: deviceCommunicator)
    }
}
