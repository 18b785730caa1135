// Fuzzing targets for Baton's readers of untrusted files, for libFuzzer (`scripts/checks/fuzz` builds
// this with -sanitize=fuzzer,address -D FUZZING). Each input is handed to one reader, chosen by
// BATON_FUZZ_TARGET: safetensors, state, shard or latest. A reader may reject the input with an
// error; it must never crash, hang, or allocate what the input asks for.
import Baton
import Foundation

#if FUZZING
enum FuzzSetup {
    static let target = ProcessInfo.processInfo.environment["BATON_FUZZ_TARGET"] ?? "safetensors"
    static let scratch: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("baton-fuzz-\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()
}

/// Printed when libFuzzer exits: how deep the safetensors inputs went.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> Int32 {
    atexit {
        if FuzzSetup.target == "safetensors" {
            print("reached tensor loading: \(FuzzTargets.reachedLoading), loaded into the model: \(FuzzTargets.loaded)")
        }
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    FuzzTargets.run(target: FuzzSetup.target, input: Data(bytes: data, count: size), scratch: FuzzSetup.scratch)
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
) -> Int32

/// SwiftPM links an executable's entry point under this name; hand control to libFuzzer's driver.
@_cdecl("baton_fuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return withUnsafeMutablePointer(to: &arguments) { LLVMFuzzerRunDriver(&count, $0, fuzzOneInput) }
}
#else
@main
struct BatonFuzz {
    static func main() {
        print("baton-fuzz: build it with scripts/checks/fuzz (libFuzzer), which runs each reader's fuzzing target")
    }
}
#endif
