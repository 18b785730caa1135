/// What `--device` asked for.
public enum DeviceRequest: String, CaseIterable, Sendable {
    case cpu, cuda, auto
}

/// Opens the device a run asked for. The CUDA backend library is not part of this build yet
/// (it arrives with Kernels/), so `cuda` fails with a one-line reason and `auto` picks the CPU.
public enum DeviceSelection {
    public static func open(_ request: DeviceRequest, threads: Int, log: (String) -> Void) throws -> any Device {
        switch request {
        case .cpu:
            return CPUDevice(threads: threads)
        case .cuda:
            throw BatonError("--device cuda: no CUDA backend library (libbaton_cuda.so) is available in this build; use --device cpu or auto")
        case .auto:
            let device = CPUDevice(threads: threads)
            log("auto picked cpu: no CUDA backend library in this build")
            return device
        }
    }
}
