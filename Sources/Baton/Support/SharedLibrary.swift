import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A function table exported by a library loaded at run time — the CUDA backend, the MPI and
/// NCCL communicators: dlopen the file, call its one exported function, take the table it
/// returns. Each caller turns a failure into its own message and checks the table's version.
enum SharedLibrary {
    enum Failure: Error {
        case missing
        case cannotLoad(reason: String)
        case noSymbol
        case noTable
    }

    /// `global`: the library's symbols serve libraries it loads later (OpenMPI's plugins need libmpi's).
    static func table<Table>(at path: String, symbol: String, global: Bool = false, as: Table.Type) -> Result<UnsafePointer<Table>, Failure> {
        guard FileManager.default.fileExists(atPath: path) else { return .failure(.missing) }
        guard let handle = dlopen(path, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL)) else {
            return .failure(.cannotLoad(reason: dlerror().map { String(cString: $0) } ?? "unknown reason"))
        }
        guard let function = dlsym(handle, symbol) else { return .failure(.noSymbol) }
        typealias GetTable = @convention(c) () -> UnsafeRawPointer?
        guard let table = unsafeBitCast(function, to: GetTable.self)() else { return .failure(.noTable) }
        return .success(table.assumingMemoryBound(to: Table.self))
    }
}
