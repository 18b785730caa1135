/// What `--device` asked for.
public enum DeviceRequest: String, CaseIterable, Sendable {
    case cpu, cuda, auto
}

/// Opens the device a run asked for. `cuda` fails with a one-line reason when the backend
/// library, the driver or a GPU is missing; `auto` takes CUDA where it opens, else the CPU, and
/// says which it picked and why.
public enum DeviceSelection {
    /// `gpu`: which GPU (under mpirun, each rank takes the one its local rank names); `attention`:
    /// a GPU's attention kernels (the CPU keeps the scores whatever it says).
    public static func open(
        _ request: DeviceRequest, threads: Int, gpu: Int = 0, attention: AttentionKernel = .flash,
        log: (String) -> Void
    ) throws -> Device {
        switch request {
        case .cpu:
            return Device.cpu(threads: threads)
        case .cuda:
            return try Device.cuda(deviceIndex: gpu, attention: attention)
        case .auto:
            do {
                let device = try Device.cuda(deviceIndex: gpu, attention: attention)
                log("auto picked cuda")
                return device
            } catch BatonError.backendUnavailable(let reason) {
                log("auto picked cpu: \(reason)")
                return Device.cpu(threads: threads)
            }
        }
    }
}
