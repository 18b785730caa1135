import Foundation

@testable import Baton

extension SafeTensors.File {
    /// The tensor as integers (I32 or I64): the PyTorch fixture's token ids. Only tests read
    /// integer tensors.
    func integers(_ name: String) throws -> [Int] {
        guard let entry = entries[name] else { throw BatonError("\(url.path): no tensor named \(name)") }
        let base = dataStart + entry.range.lowerBound
        return try data.withUnsafeBytes { raw in
            switch entry.dtype {
            case "I32":
                return (0..<(entry.range.count / 4)).map {
                    Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: base + $0 * 4, as: Int32.self)))
                }
            case "I64":
                return (0..<(entry.range.count / 8)).map {
                    Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: base + $0 * 8, as: Int64.self)))
                }
            default: throw BatonError("\(url.path): tensor \(name) is \(entry.dtype), expected I32 or I64")
            }
        }
    }
}
