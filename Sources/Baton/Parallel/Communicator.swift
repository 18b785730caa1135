import CBatonABI
import Foundation

/// The processes of a data-parallel job, through the communicator library (libbaton_mpi.so, built
/// from Comm/mpi by scripts/setup/build-mpi) loaded at run time: `baton` stays one process, and needs no
/// MPI, unless a launcher (mpirun) started it.
public final class Communicator {
    public let rank: Int
    public let size: Int
    /// nil for a job of one process that no launcher started (`Communicator.single`).
    private let table: UnsafePointer<baton_comm_table>?
    /// The library's handle for this job; nil without a table, and once finalized.
    private var handle: OpaquePointer?

    public static let libraryName = "libbaton_mpi.so"

    /// The world size the launcher announced in the environment (OpenMPI or MPICH/PMI), if any.
    public static var launchedSize: Int? {
        let environment = ProcessInfo.processInfo.environment
        return (environment["OMPI_COMM_WORLD_SIZE"] ?? environment["PMI_SIZE"]).flatMap(Int.init)
    }

    public static var candidatePath: String {
        if let path = ProcessInfo.processInfo.environment["BATON_MPI_LIBRARY"], !path.isEmpty { return path }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent(libraryName).path
    }

    /// The job this process belongs to when a launcher started it, else nil (one process).
    public static func join() throws -> Communicator? {
        guard let size = launchedSize else { return nil }
        let path = candidatePath
        let what = "launched by mpirun (\(size) rank\(size == 1 ? "" : "s"))"
        let table = try SharedLibrary.requireTable(
            at: path, symbol: "baton_comm_get_table", kind: "communicator", global: true, as: baton_comm_table.self,
            version: \.abi_version, expected: BATON_COMM_ABI_VERSION, rebuild: "scripts/setup/build-mpi",
            missing:
                "\(what), but there is no MPI communicator library at \(path); build it with scripts/build (which "
                + "puts it beside baton), or set BATON_MPI_LIBRARY",
            cannotLoad: { "\(what), but \(path) does not load: \($0) (is OpenMPI installed?)" })
        var rank: Int32 = 0, worldSize: Int32 = 0
        var message = [CChar](repeating: 0, count: 512)
        var handle: OpaquePointer?
        guard table.pointee.`init`(&handle, &rank, &worldSize, &message, message.count) == 0, let handle else {
            throw BatonError("\(what): MPI did not start: \(String(cString: message))")
        }
        return Communicator(rank: Int(rank), size: Int(worldSize), table: table, handle: handle)
    }

    /// A job of this one process, without MPI: every collective is a copy or nothing. It lets
    /// `--comm nccl` run at world size 1 where there is no launcher (scripts/checks/gpu-check).
    public static func single() -> Communicator { Communicator(rank: 0, size: 1, table: nil, handle: nil) }

    private init(rank: Int, size: Int, table: UnsafePointer<baton_comm_table>?, handle: OpaquePointer?) {
        self.rank = rank
        self.size = size
        self.table = table
        self.handle = handle
    }

    private func check(_ status: Int32, _ what: String) throws {
        guard status == 0 else {
            throw BatonError(
                "rank \(rank): \(what) failed: "
                    + "\((table?.pointee.last_error(handle).map { String(cString: $0) } ?? "unknown error"))"
            )
        }
    }

    /// Leaves the job; the communicator is not used after this.
    public func finalize() {
        guard let handle else { return }
        self.handle = nil
        _ = table?.pointee.finalize(handle)
    }

    /// A collective that waits longer than this on a rank fails naming it (0: wait forever).
    public func setTimeout(seconds: Double) throws {
        guard let table else { return }
        try check(table.pointee.set_timeout(handle, seconds), "set timeout")
    }
    public func barrier() throws {
        guard let table else { return }
        try check(table.pointee.barrier(handle), "barrier")
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int = 0) throws {
        guard let table else { return }
        try check(table.pointee.broadcast(handle, buffer.baseAddress, buffer.count, Int32(root)), "broadcast")
    }

    public func exchange(
        _ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer, with peer: Int
    ) throws {
        precondition(send.count == receive.count)
        guard let table else {
            receive.copyMemory(from: send)
            return
        }
        try check(
            table.pointee.exchange(handle, send.baseAddress, receive.baseAddress, send.count, Int32(peer)),
            "exchange with rank \(peer)")
    }

    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        guard let table else { return }
        try check(table.pointee.allreduce_sum(handle, values.baseAddress, values.count), "all-reduce")
    }

    /// ZeRO-1: `slices`' slice of `values` from each rank, to every rank, in place.
    public func allgatherSlices(_ values: UnsafeMutableBufferPointer<Float>, _ slices: OptimizerSlices) throws {
        guard let table, size > 1 else { return }
        try check(
            table.pointee.allgather_slices(handle, values.baseAddress, values.count, slices.length),
            "all-gather of slices")
    }

    /// ZeRO-1 with --reduce fast: the library's sum over ranks, this rank keeping its slice's.
    public func reduceScatterSum(_ values: UnsafeMutableBufferPointer<Float>, _ slices: OptimizerSlices) throws {
        guard let table, size > 1 else { return }
        try check(
            table.pointee.reduce_scatter_sum(handle, values.baseAddress, values.count, slices.length), "reduce-scatter")
    }

    /// Every rank's values, in rank order (each rank gives the same count).
    public func allgather<T>(_ values: [T]) throws -> [T] {
        guard let table else { return values }
        var result = [T](unsafeUninitializedCapacity: values.count * size) { _, count in count = values.count * size }
        try values.withUnsafeBytes { send in
            try result.withUnsafeMutableBytes { receive in
                try check(
                    table.pointee.allgather(handle, send.baseAddress, receive.baseAddress, send.count), "allgather")
            }
        }
        return result
    }

    /// Every rank gives a value (a digest, or 0 for a step that went well); they must all equal
    /// `expected`, or rank 0's where none is expected. Otherwise every rank throws, naming the first
    /// rank that differs: "rank 1: rank 3 <what>".
    public func agree(_ value: UInt32, expected: UInt32? = nil, _ what: String) throws {
        let all = try allgather([value])
        if let other = all.firstIndex(where: { $0 != (expected ?? all[0]) }) {
            throw BatonError("rank \(rank): rank \(other) \(what)")
        }
    }

    /// rank 0's string, on every rank.
    public func broadcast(_ text: String) throws -> String {
        var length = [Int64(text.utf8.count)]
        try length.withUnsafeMutableBytes { try broadcast($0) }
        var bytes = rank == 0 ? Array(text.utf8) : [UInt8](repeating: 0, count: Int(length[0]))
        try bytes.withUnsafeMutableBytes { try broadcast($0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
