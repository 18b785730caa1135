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
    static func table<Table>(
        at path: String, symbol: String, global: Bool = false, as: Table.Type
    ) -> Result<UnsafePointer<Table>, Failure> {
        guard FileManager.default.fileExists(atPath: path) else { return .failure(.missing) }
        guard let handle = dlopen(path, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL)) else {
            return .failure(.cannotLoad(reason: dlerror().map { String(cString: $0) } ?? "unknown reason"))
        }
        guard let function = dlsym(handle, symbol) else { return .failure(.noSymbol) }
        typealias GetTable = @convention(c) () -> UnsafeRawPointer?
        guard let table = unsafeBitCast(function, to: GetTable.self)() else { return .failure(.noTable) }
        return .success(table.assumingMemoryBound(to: Table.self))
    }

    /// The table, or one line in the caller's words: `missing` where there is no file,
    /// `cannotLoad(reason)` where it does not load, and that `path` is not a Baton `kind` where
    /// it has no table.
    /// A table whose `abi_version` (`version(table)`) is not `expected` is "PATH: KIND version
    /// mismatch; rebuild it with REBUILD".
    static func requireTable<Table>(
        at path: String, symbol: String, kind: String, global: Bool = false, as type: Table.Type,
        version: (Table) -> Int32, expected: Int32, rebuild: String, missing: String, cannotLoad: (String) -> String
    ) throws -> UnsafePointer<Table> {
        let found: UnsafePointer<Table>
        switch table(at: path, symbol: symbol, global: global, as: type) {
        case .success(let table): found = table
        case .failure(.missing): throw BatonError(missing)
        case .failure(.cannotLoad(let reason)): throw BatonError(cannotLoad(reason))
        case .failure(.noSymbol), .failure(.noTable): throw BatonError("\(path) is not a Baton \(kind) (no \(symbol))")
        }
        guard version(found.pointee) == expected else {
            throw BatonError("\(path): \(kind) version mismatch; rebuild it with \(rebuild)")
        }
        return found
    }
}
