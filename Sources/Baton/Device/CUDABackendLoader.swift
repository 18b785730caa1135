import CBatonABI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Finds, loads and opens the CUDA backend library (libbaton_cuda.so, built from Kernels/ by
/// CMakeLists.txt) at run time, so the same `baton` binary runs where there is no CUDA at all.
/// Looks at $BATON_CUDA_LIBRARY, else beside the executable. Each failure is one line that says
/// which step failed: no library, not loadable, not a Baton backend, ABI version mismatch, no
/// driver, no device.
public enum CUDABackendLoader {
    public static let libraryName = "libbaton_cuda.so"

    public static var candidatePath: String {
        if let path = ProcessInfo.processInfo.environment["BATON_CUDA_LIBRARY"], !path.isEmpty { return path }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent(libraryName).path
    }

    public static func open(deviceIndex: Int = 0) throws -> UnsafePointer<baton_backend_table> {
        let path = candidatePath
        guard FileManager.default.fileExists(atPath: path) else {
            throw BatonError("--device cuda: no CUDA backend library at \(path) (build it with cmake, see the README, or set BATON_CUDA_LIBRARY)")
        }
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            throw BatonError("--device cuda: cannot load \(path): \(reason)")
        }
        guard let symbol = dlsym(handle, "baton_backend_get_table") else {
            throw BatonError("--device cuda: \(path) is not a Baton backend (no baton_backend_get_table)")
        }
        typealias GetTable = @convention(c) () -> UnsafePointer<baton_backend_table>?
        guard let table = unsafeBitCast(symbol, to: GetTable.self)() else {
            throw BatonError("--device cuda: \(path) returned no function table")
        }
        let version = Int(table.pointee.abi_version), expected = Int(baton_backend_abi_version())
        guard version == expected else {
            throw BatonError("--device cuda: version mismatch: \(path) speaks backend ABI \(version), this baton speaks \(expected); rebuild the library from this version's Kernels/")
        }
        guard table.pointee.open_device(Int32(deviceIndex)) == 0 else {
            let message = table.pointee.take_error().map { String(cString: $0) } ?? "unknown error"
            let lower = message.lowercased()
            if lower.contains("driver") {
                throw BatonError("--device cuda: no usable NVIDIA driver (\(message))")
            }
            if lower.contains("no cuda") || lower.contains("no device") || lower.contains("no cuda-capable") {
                throw BatonError("--device cuda: no CUDA device (\(message))")
            }
            throw BatonError("--device cuda: the GPU could not be opened (\(message))")
        }
        return table
    }
}
