import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

final class SafeTensorsTests: XCTestCase {
    func testRoundTripAndLayout() throws {
        let a: [Float] = [1, 2, 3, 4, 5, 6], b: [Float] = [-1.5]
        let url = try TestPaths.temporaryFolder("st").appendingPathComponent("t.safetensors")
        let check = try a.withUnsafeBufferPointer { pa in
            try b.withUnsafeBufferPointer { pb in
                try TensorFile.write(
                    url, entries: [.init(name: "a", shape: [2, 3]), .init(name: "b", shape: [1])], segments: [pa, pb],
                    metadata: ["k": "v"])
            }
        }
        let data = try Data(contentsOf: url)
        XCTAssertEqual(check.bytes, data.count)
        let headerLength = data.withUnsafeBytes { Int($0.loadUnaligned(as: UInt64.self)) }
        XCTAssertEqual((8 + headerLength) % 8, 0, "data section is 8-byte aligned")
        XCTAssertEqual(data.count, 8 + headerLength + 28)
        let file = try SafeTensors.read(url)
        XCTAssertEqual(try file.floats("a"), a)
        XCTAssertEqual(try file.floats("b"), b)
        XCTAssertEqual(file.entries["a"]?.shape, [2, 3])
        XCTAssertEqual(file.metadata, ["k": "v"])
    }

    /// Another writer need not align the data section: a tensor at an odd address is copied, and
    /// the copy must outlive the reader's closure (a pointer into an array already freed would read
    /// what the allocation below puts there).
    func testAMisalignedTensorIsReadCorrectly() throws {
        let values = (0..<4096).map { Float($0) + 0.5 }
        // 61 bytes: data at 69.
        let header = Data(#"{"w":{"dtype":"F32","shape":[4096],"data_offsets":[0,16384]}}"#.utf8)
        var data = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(header)
        values.withUnsafeBytes { data.append(contentsOf: $0) }
        let url = try TestPaths.temporaryFolder("misaligned").appendingPathComponent("m.safetensors")
        try data.write(to: url)
        let file = try SafeTensors.read(url)
        let entry = try XCTUnwrap(file.entries["w"])
        let read = try file.withFloats(entry) { floats -> [Float] in
            let other = [Float](repeating: -7, count: floats.count)  // an allocation of the same size
            XCTAssertEqual(other.count, values.count)
            return Array(floats)
        }
        let wrong = zip(read, values).filter { $0 != $1 }.count
        XCTAssert(
            read.count == values.count && wrong == 0,
            "\(wrong) of \(values.count) values read wrong (first read: \(read.first ?? .nan))")
    }

    func testMalformedFilesAreRejected() throws {
        let folder = try TestPaths.temporaryFolder("badst")
        func write(_ header: String, dataBytes: Int = 8) throws -> URL {
            var data = Data()
            let json = Data(header.utf8)
            withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
            data.append(json)
            data.append(Data(count: dataBytes))
            let url = folder.appendingPathComponent("f.safetensors")
            try data.write(to: url)
            return url
        }
        let cases = [
            (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, "does not match"),
            (#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, "outside the data"),
            (#"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#, "unknown dtype"),
            (#"not json"#, "not a JSON object"),
        ]
        for (header, expected) in cases {
            XCTAssertThrowsError(try SafeTensors.read(try write(header))) {
                XCTAssert("\($0)".contains(expected), "\($0)")
            }
        }
        var huge = Data()
        withUnsafeBytes(of: UInt64(1 << 60).littleEndian) { huge.append(contentsOf: $0) }
        let url = folder.appendingPathComponent("huge.safetensors")
        try huge.write(to: url)
        XCTAssertThrowsError(try SafeTensors.read(url)) { XCTAssert("\($0)".contains("exceeds the file")) }
    }
}
