import CBatonABI
import Foundation

/// Collectives on GPU memory between the GPU ranks of a job: the NCCL communicator library
/// (libbaton_nccl.so, built from Comm/nccl by CMakeLists.txt beside libbaton_cuda.so), which loads
/// NCCL itself (libnccl.so.2) at run time. The MPI communicator launches the job and carries the
/// NCCL unique id from rank 0 to the others, as llm.c does. Gradients then stay on the GPU: no
/// host copy per step.
public final class DeviceCommunicator {
    public let rank: Int
    public let size: Int
    /// The NCCL version that was loaded, e.g. "2.27.7".
    public let version: String
    private let table: UnsafePointer<baton_device_comm_table>
    /// The library's handle for this communicator; nil once finalized.
    private var handle: OpaquePointer?

    public static let libraryName = "libbaton_nccl.so"

    /// $BATON_NCCL_COMM_LIBRARY, else beside the CUDA backend library (which is beside `baton`
    /// unless $BATON_CUDA_LIBRARY says otherwise).
    public static var candidatePath: String {
        if let path = ProcessInfo.processInfo.environment["BATON_NCCL_COMM_LIBRARY"], !path.isEmpty { return path }
        return URL(fileURLWithPath: CUDABackendLoader.candidatePath).deletingLastPathComponent().appendingPathComponent(
            libraryName
        ).path
    }

    /// NCCL's own library: $BATON_LIBNCCL (e.g. a wheel's nvidia/nccl/lib/libnccl.so.2), else
    /// libnccl.so.2 on the loader's search path.
    public static var ncclLibrary: String? {
        ProcessInfo.processInfo.environment["BATON_LIBNCCL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Loads the communicator library and NCCL, without joining anything: the table, a handle
    /// (finalize frees it), and NCCL's version.
    public static func load() throws -> (
        table: UnsafePointer<baton_device_comm_table>, handle: OpaquePointer, version: String
    ) {
        let path = candidatePath
        let table = try SharedLibrary.requireTable(
            at: path, symbol: "baton_device_comm_get_table", kind: "device communicator",
            as: baton_device_comm_table.self, version: \.abi_version, expected: BATON_DEVICE_COMM_ABI_VERSION,
            rebuild: "cmake",
            missing:
                "no NCCL communicator library at \(path); build it with cmake where nccl.h is (see the README), or "
                + "set BATON_NCCL_COMM_LIBRARY",
            cannotLoad: { "\(path) does not load: \($0)" })
        var version = [CChar](repeating: 0, count: 32), message = [CChar](repeating: 0, count: 512)
        var handle: OpaquePointer?
        let loaded =
            ncclLibrary.map {
                $0.withCString { table.pointee.load($0, &handle, &version, version.count, &message, message.count) }
            }
            ?? table.pointee.load(nil, &handle, &version, version.count, &message, message.count)
        guard loaded == 0, let handle else {
            throw BatonError(
                "NCCL: \(String(cString: message)) (install NCCL, or point BATON_LIBNCCL at libnccl.so.2, e.g. from "
                    + "the nvidia-nccl-cu12 wheel)"
            )
        }
        return (table, handle, String(cString: version))
    }

    /// This rank's place in an NCCL communicator over the job's ranks, on GPU `deviceIndex`. Every
    /// rank calls it together.
    public static func join(
        over communicator: Communicator, deviceIndex: Int, timeoutSeconds: Double
    ) throws -> DeviceCommunicator {
        // Every rank takes each step below, even one that failed the step before, and the ranks
        // agree after each: a rank without NCCL ends the attempt everywhere instead of leaving
        // the others waiting in a collective.
        let loaded = Result { try load() }
        try agree(communicator, loaded, "could not load NCCL")
        let (table, handle, version) = try loaded.get()
        do {
            var id = [UInt8](repeating: 0, count: Int(BATON_DEVICE_COMM_ID_BYTES))
            let made = communicator.rank != 0 || table.pointee.unique_id(handle, &id) == 0
            try agree(
                communicator,
                made ? .success(()) : .failure(BatonError("rank 0: NCCL unique id: \(lastError(table, handle))")),
                "could not make an NCCL id")
            try id.withUnsafeMutableBytes { try communicator.broadcast($0) }
            let joined =
                table.pointee.`init`(
                    handle, id, Int32(communicator.rank), Int32(communicator.size), Int32(deviceIndex), timeoutSeconds)
                == 0
            let started: Result<Void, Error> =
                joined
                ? .success(())
                : .failure(
                    BatonError(
                        "rank \(communicator.rank): NCCL did not start on GPU \(deviceIndex): "
                            + "\(lastError(table, handle))"
                    ))
            try agree(communicator, started, "NCCL did not start")
        } catch {
            _ = table.pointee.finalize(handle)
            throw error
        }
        return DeviceCommunicator(
            rank: communicator.rank, size: communicator.size, version: version, table: table, handle: handle)
    }

    /// Throws on every rank when any rank's `outcome` failed: its own error where it failed, else
    /// one that names the first rank that did.
    private static func agree<T>(_ communicator: Communicator, _ outcome: Result<T, Error>, _ what: String) throws {
        let agreed = Result { try communicator.agree(outcome.isFailure ? 1 : 0, expected: 0, what) }
        if case .failure(let error) = outcome { throw error }
        try agreed.get()
    }

    private init(
        rank: Int, size: Int, version: String, table: UnsafePointer<baton_device_comm_table>, handle: OpaquePointer
    ) {
        self.rank = rank
        self.size = size
        self.version = version
        self.table = table
        self.handle = handle
    }

    fileprivate static func lastError(
        _ table: UnsafePointer<baton_device_comm_table>, _ handle: OpaquePointer?
    ) -> String {
        table.pointee.last_error(handle).map { String(cString: $0) } ?? "unknown error"
    }

    private func check(_ status: Int32, _ what: String) throws {
        guard status == 0 else { throw BatonError("rank \(rank): \(what) failed: \(Self.lastError(table, handle))") }
    }

    /// Leaves the NCCL communicator; it is not used after this.
    public func finalize() {
        guard let handle else { return }
        self.handle = nil
        _ = table.pointee.finalize(handle)
    }

    /// Sends `send` (GPU memory) to `peer` and receives as many floats from it into `receive`.
    public func exchange(_ send: Tensor, into receive: Tensor, with peer: Int) throws {
        precondition(send.count == receive.count)
        try check(
            table.pointee.exchange(handle, send.pointer, receive.pointer, send.count, Int32(peer)),
            "NCCL exchange with rank \(peer)")
    }

    /// ZeRO-1: each rank's slice of `tensor` to every rank, in place.
    public func allgatherSlices(_ tensor: Tensor, _ slices: OptimizerSlices) throws {
        try check(
            table.pointee.allgather_slices(handle, tensor.pointer, tensor.count, slices.length),
            "NCCL all-gather of slices")
    }

    /// ZeRO-1 with --reduce fast: NCCL's sum over ranks, this rank keeping its slice's.
    public func reduceScatterSum(_ tensor: Tensor, _ slices: OptimizerSlices) throws {
        try check(
            table.pointee.reduce_scatter_sum(handle, tensor.pointer, tensor.count, slices.length), "NCCL reduce-scatter"
        )
    }

    /// NCCL's own in-place sum over the ranks.
    public func allreduceSum(_ tensor: Tensor) throws {
        try check(table.pointee.allreduce_sum(handle, tensor.pointer, tensor.count), "NCCL all-reduce")
    }
}

private extension Result {
    var isFailure: Bool {
        if case .failure = self { return true }
        return false
    }
}
