import CBatonCPU
import Foundation

/// The hardware a checkpoint was written on, recorded in its state.json. A float32 run's bits
/// follow from the kernels that ran: on the CPU, the machine's architecture and the BLAS core
/// that OpenBLAS picked (the CPU's own, or OPENBLAS_CORETYPE's); on a GPU, the card, its SM count
/// and the CUDA and cuBLAS versions (cuBLAS's own conditions for repeatable results). A resume on
/// hardware whose record differs continues exactly from the saved state, but its bits will differ
/// from an uninterrupted run on the original hardware, and says so.
public struct HardwareRecord: Codable, Equatable, Sendable {
    /// "cpu" or "cuda".
    public var backend: String
    /// The host CPU's model name ("AMD EPYC 7B13"), or the architecture where the system names none.
    public var cpu: String
    /// The architecture and the widest vector extension: "x86_64 AVX-512", "x86_64 AVX2", "aarch64 NEON".
    public var isa: String
    /// The CPU backend's BLAS and the core its kernels run on: "OpenBLAS 0.3.21 Haswell".
    public var blas: String?
    /// The CUDA backend's device: name, memory, compute capability, SMs, CUDA runtime and cuBLAS versions.
    public var gpu: String?

    /// What the bits depend on; the thread count is not part of it (the CPU backend gives the
    /// same bits on any number of threads).
    public var bitsIdentity: String {
        backend == "cuda" ? "cuda: \(gpu ?? "?")" : "cpu: \(isa.split(separator: " ").first ?? "?"), \(blas ?? "?")"
    }

    /// One line for a notice: the device and the host.
    public var description: String {
        backend == "cuda" ? "cuda (\(gpu ?? "?")) on \(cpu)" : "cpu (\(blas ?? "?")) on \(cpu), \(isa)"
    }

    /// This machine's record, for a device of `backend` whose own description (the GPU's) is `gpu`.
    static func current(backend: String, gpu: String?) -> HardwareRecord {
        let host = HostCPU.read()
        var blas: String?
        if backend == "cpu" {
            var line = [CChar](repeating: 0, count: 96)
            baton_cpu_blas(&line, line.count)
            blas = String(cString: line)
        }
        return HardwareRecord(
            backend: backend, cpu: host.model, isa: host.isa, blas: blas, gpu: backend == "cuda" ? gpu : nil)
    }
}

/// The host CPU as Linux describes it in /proc/cpuinfo.
struct HostCPU {
    var model: String
    var isa: String

    static func read() -> HostCPU {
        var name = utsname()
        uname(&name)
        let machine = withUnsafeBytes(of: &name.machine) {
            String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        func field(_ key: String) -> String? {
            for line in info.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 1)
                if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == key {
                    return parts[1].trimmingCharacters(in: .whitespaces)
                }
            }
            return nil
        }
        let flags = Set((field("flags") ?? field("Features") ?? "").split(separator: " ").map(String.init))
        let vector: String
        if flags.contains("avx512f") {
            vector = "AVX-512"
        } else if flags.contains("avx2") {
            vector = "AVX2"
        } else if flags.contains("avx") {
            vector = "AVX"
        } else if flags.contains("sve") {
            vector = "SVE"
        } else if flags.contains("asimd") {
            vector = "NEON"
        } else {
            vector = "baseline"
        }
        return HostCPU(model: field("model name") ?? machine, isa: "\(machine) \(vector)")
    }
}
