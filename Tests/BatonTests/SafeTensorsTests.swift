import Foundation
import XCTest
@testable import Baton

final class SafeTensorsTests: XCTestCase {
    func testRoundTripAndLayout() throws {
        let a: [Float] = [1, 2, 3, 4, 5, 6], b: [Float] = [-1.5]
        let data = try a.withUnsafeBufferPointer { pa in
            try b.withUnsafeBufferPointer { pb in
                try SafeTensors.encode([.init(name: "a", shape: [2, 3], values: pa), .init(name: "b", shape: [1], values: pb)],
                                       metadata: ["k": "v"])
            }
        }
        let headerLength = data.withUnsafeBytes { Int($0.loadUnaligned(as: UInt64.self)) }
        XCTAssertEqual((8 + headerLength) % 8, 0, "data section is 8-byte aligned")
        XCTAssertEqual(data.count, 8 + headerLength + 28)
        let url = try TestPaths.temporaryFolder("st").appendingPathComponent("t.safetensors")
        try data.write(to: url)
        let file = try SafeTensors.read(url)
        XCTAssertEqual(try file.floats("a"), a)
        XCTAssertEqual(try file.floats("b"), b)
        XCTAssertEqual(file.entries["a"]?.shape, [2, 3])
        XCTAssertEqual(file.metadata, ["k": "v"])
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
            XCTAssertThrowsError(try SafeTensors.read(try write(header))) { XCTAssert("\($0)".contains(expected), "\($0)") }
        }
        var huge = Data()
        withUnsafeBytes(of: UInt64(1 << 60).littleEndian) { huge.append(contentsOf: $0) }
        let url = folder.appendingPathComponent("huge.safetensors")
        try huge.write(to: url)
        XCTAssertThrowsError(try SafeTensors.read(url)) { XCTAssert("\($0)".contains("exceeds the file")) }
    }
}
