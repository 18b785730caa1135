import Foundation

/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping each
/// tensor name to {dtype, shape, data_offsets} (plus an optional "__metadata__" of strings),
/// then the raw little-endian data. Readable by `safetensors.torch.load_file`.
public enum SafeTensors {
    public struct Entry {
        public let name: String
        public let dtype: String
        public let shape: [Int]
        /// Byte range inside the data section.
        public let range: Range<Int>
    }

    public struct File {
        public let url: URL
        public let entries: [String: Entry]
        public let metadata: [String: String]
        let data: Data
        let dataStart: Int

        public var names: [String] { entries.keys.sorted() }

        /// The tensor as float32 values (F32 stored as is).
        public func floats(_ name: String) throws -> [Float] {
            guard let entry = entries[name] else { throw BatonError("\(url.path): no tensor named \(name)") }
            guard entry.dtype == "F32" else {
                throw BatonError("\(url.path): tensor \(name) is \(entry.dtype), expected F32")
            }
            return data.withUnsafeBytes { raw in
                (0..<(entry.range.count / 4)).map {
                    Float(
                        bitPattern: UInt32(
                            littleEndian: raw.loadUnaligned(
                                fromByteOffset: dataStart + entry.range.lowerBound + $0 * 4, as: UInt32.self)))
                }
            }
        }

        /// Runs `body` on an F32 tensor's values where they lie in the file (little-endian hosts;
        /// the data section is 8-byte aligned in files Baton writes, copied when it is not).
        func withFloats<R>(_ entry: Entry, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
            precondition(entry.dtype == "F32")
            return try data.withUnsafeBytes { raw in
                let bytes = UnsafeRawBufferPointer(
                    rebasing: raw[(dataStart + entry.range.lowerBound)..<(dataStart + entry.range.upperBound)])
                if let base = bytes.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
                    return try body(
                        UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: bytes.count / 4))
                }
                // Misaligned (another writer's file): copy the bytes into float storage, and run
                // `body` while that copy is alive.
                let count = bytes.count / 4
                var copy = [Float](repeating: 0, count: count)
                copy.withUnsafeMutableBytes {
                    $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[..<(count * 4)]))
                }
                return try copy.withUnsafeBufferPointer { try body($0) }
            }
        }

        /// Runs `body` on a tensor's values as float32: F32 where they lie (withFloats), BF16 and F16
        /// widened into a copy. Every bfloat16 and float16 value is a float32 value, so the widening
        /// is exact (bfloat16 is float32's top 16 bits). Other dtypes are the caller's to refuse.
        func withFloat32Values<R>(_ entry: Entry, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
            guard entry.dtype != "F32" else { return try withFloats(entry, body) }
            precondition(SafeTensors.widenedToFloat32.contains(entry.dtype))
            let count = entry.range.count / 2, start = dataStart + entry.range.lowerBound
            let brain = entry.dtype == "BF16"
            let values = data.withUnsafeBytes { raw in
                (0..<count).map { index -> Float in
                    let bits = UInt16(
                        littleEndian: raw.loadUnaligned(fromByteOffset: start + 2 * index, as: UInt16.self))
                    return brain ? Float(bitPattern: UInt32(bits) << 16) : Float(Float16(bitPattern: bits))
                }
            }
            return try values.withUnsafeBufferPointer { try body($0) }
        }
    }

    /// The dtypes whose values load as float32 exactly (withFloat32Values).
    static let widenedToFloat32: Set<String> = ["F32", "BF16", "F16"]

    static let elementSizes = [
        "F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I32": 4, "I64": 8, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    ]
    /// Headers larger than this are refused before anything is allocated for them.
    static let maximumHeaderBytes = 100_000_000

    public static func read(_ url: URL) throws -> File {
        let path = url.path
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw BatonError("\(path): cannot read safetensors file (\(error.localizedDescription))")
        }
        guard data.count >= 8 else { throw BatonError("\(path): not a safetensors file (shorter than 8 bytes)") }
        let headerLength = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength <= UInt64(min(maximumHeaderBytes, data.count - 8)) else {
            throw BatonError(
                "\(path): safetensors header length \(headerLength) exceeds the file (\(data.count) bytes)")
        }
        let headerData = data.subdata(in: 8..<(8 + Int(headerLength)))
        guard let json = try? JSONSerialization.jsonObject(with: headerData), let header = json as? [String: Any] else {
            throw BatonError("\(path): safetensors header is not a JSON object")
        }
        let dataStart = 8 + Int(headerLength)
        let dataCount = data.count - dataStart
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let dictionary = value as? [String: String] else {
                    throw BatonError("\(path): __metadata__ must map strings to strings")
                }
                metadata = dictionary
                continue
            }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2
            else {
                throw BatonError("\(path): tensor \(name) has a malformed header entry")
            }
            guard let elementSize = elementSizes[dtype] else {
                throw BatonError("\(path): tensor \(name) has unknown dtype \(dtype)")
            }
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataCount
            else {
                throw BatonError("\(path): tensor \(name) has offsets \(offsets) outside the data (\(dataCount) bytes)")
            }
            let (elements, overflow) = shape.reduce((1, false)) { acc, dim in
                let (product, o) = acc.0.multipliedReportingOverflow(by: dim)
                return (product, acc.1 || o)
            }
            guard !overflow, elements.multipliedReportingOverflow(by: elementSize) == (elements * elementSize, false),
                elements * elementSize == offsets[1] - offsets[0]
            else {
                throw BatonError(
                    "\(path): tensor \(name) shape \(shape) does not match its \(offsets[1] - offsets[0]) bytes")
            }
            entries[name] = Entry(name: name, dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
        }
        // Tensors may not share bytes.
        let ordered = entries.values.sorted {
            ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound)
        }
        for (previous, next) in zip(ordered, ordered.dropFirst())
        where next.range.lowerBound < previous.range.upperBound {
            throw BatonError("\(path): tensors \(previous.name) and \(next.name) overlap in the data section")
        }
        return File(url: url, entries: entries, metadata: metadata, data: data, dataStart: dataStart)
    }
}
