/// What `--device` asked for.
public enum DeviceRequest: String, CaseIterable, Sendable {
    case cpu, cuda, auto
}

/// Opens the device a run asked for. `cuda` fails with a one-line reason when the backend
/// library, the driver or a GPU is missing; `auto` takes CUDA where it opens, else the CPU, and
/// says which it picked and why.
public enum DeviceSelection {
    public static func open(_ request: DeviceRequest, threads: Int, log: (String) -> Void) throws -> any Device {
        switch request {
        case .cpu:
            return CPUDevice(threads: threads)
        case .cuda:
            return try CUDADevice()
        case .auto:
            do {
                let device = try CUDADevice()
                log("auto picked cuda")
                return device
            } catch let error as BatonError {
                let reason = error.message.replacingOccurrences(of: "--device cuda: ", with: "")
                log("auto picked cpu: \(reason)")
                return CPUDevice(threads: threads)
            }
        }
    }
}
