import CBatonABI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

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
        guard FileManager.default.fileExists(atPath: path) else { throw BatonError.backendUnavailable(.noLibrary(path: path)) }
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw BatonError.backendUnavailable(.cannotLoad(path: path, reason: dlerror().map { String(cString: $0) } ?? "unknown reason"))
        }
        guard let symbol = dlsym(handle, "baton_backend_get_table") else {
            throw BatonError.backendUnavailable(.notABackend(path: path, reason: "no baton_backend_get_table"))
        }
        typealias GetTable = @convention(c) () -> UnsafePointer<baton_backend_table>?
        guard let table = unsafeBitCast(symbol, to: GetTable.self)() else { throw BatonError.backendUnavailable(.noTable(path: path)) }
        let version = Int(table.pointee.abi_version), expected = Int(BATON_BACKEND_ABI_VERSION)
        guard version == expected else { throw BatonError.backendUnavailable(.abiMismatch(path: path, found: version, expected: expected)) }
        return table
    }
}
