import CBatonABI
import Foundation

/// Finds and loads the CUDA backend library (libbaton_cuda.so, built from Kernels/ by
/// CMakeLists.txt) at run time, so the same `baton` binary runs where there is no CUDA at all.
/// Looks at $BATON_CUDA_LIBRARY, else beside the executable. Each failure is a case of
/// BackendUnavailable: no library, not loadable, not a Baton backend, ABI version mismatch (the
/// driver and the device are checked when Device.cuda opens a context).
public enum CUDABackendLoader {
    public static let libraryName = "libbaton_cuda.so"

    public static var candidatePath: String {
        if let path = ProcessInfo.processInfo.environment["BATON_CUDA_LIBRARY"], !path.isEmpty { return path }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent(libraryName).path
    }

    static func loadTable() throws -> UnsafePointer<baton_backend_table> {
        let path = candidatePath
        let table: UnsafePointer<baton_backend_table>
        switch SharedLibrary.table(at: path, symbol: "baton_backend_get_table", as: baton_backend_table.self) {
        case .success(let found): table = found
        case .failure(.missing): throw BatonError.backendUnavailable(.noLibrary(path: path))
        case .failure(.cannotLoad(let reason)):
            throw BatonError.backendUnavailable(.cannotLoad(path: path, reason: reason))
        case .failure(.noSymbol):
            throw BatonError.backendUnavailable(.notABackend(path: path, reason: "no baton_backend_get_table"))
        case .failure(.noTable): throw BatonError.backendUnavailable(.noTable(path: path))
        }
        let version = Int(table.pointee.abi_version), expected = Int(BATON_BACKEND_ABI_VERSION)
        guard version == expected else {
            throw BatonError.backendUnavailable(.abiMismatch(path: path, found: version, expected: expected))
        }
        return table
    }
}
