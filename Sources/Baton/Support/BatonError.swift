import Foundation

/// Every error a user can meet. `message` is one line that names the file or flag at fault and,
/// where there is one, what to do about it. Code that must react to a particular failure matches
/// its case; no code looks inside the text.
public enum BatonError: Error, CustomStringConvertible, Equatable {
    /// A failure nothing branches on: only shown.
    case message(String)
    /// A compute backend could not be opened (see `BackendUnavailable`).
    case backendUnavailable(BackendUnavailable)
    /// An op or a transfer failed on an opened device ("cuda: op: CUDA error string").
    case deviceFailure(backend: String, status: DeviceStatus, detail: String)
    /// A save onto an existing, valid checkpoint without --overwrite.
    case checkpointExists(path: String)
    /// A file could not be created or written; `code` is the errno.
    case fileWriteFailed(path: String, what: String, code: Int32, neededBytes: Int)
    /// A checkpoint save ran out of disk; the earlier checkpoints are intact.
    case checkpointDiskFull(checkpoint: String, neededBytes: Int, folder: String, freeBytes: Int?)
    /// A data folder has no shard of this split ("train" or "val").
    case noShards(folder: String, split: String)
    /// A flag's value out of its range (`--steps 0`, `--precision fp16`): a usage error, exit
    /// status 2. `message` names the flag. A bad value read from a file is not one of these: its
    /// message names the file.
    case invalidFlag(flag: String, message: String)

    public init(_ message: String) { self = .message(message) }

    public var message: String {
        switch self {
        case .message(let text): return text
        case .backendUnavailable(let reason): return "--device cuda: \(reason.description)"
        case .deviceFailure(let backend, _, let detail): return "\(backend): \(detail)"
        case .checkpointExists(let path): return "checkpoint \(path) already exists; pass --overwrite to replace it"
        case .fileWriteFailed(let path, let what, let code, let bytes):
            if code == ENOSPC {
                return
                    "\(path): \(what): no space left on device (this file needs \(bytes) bytes); free space and resume"
            }
            return "\(path): \(what) (\(String(cString: strerror(code))))"
        case .checkpointDiskFull(let checkpoint, let needed, let folder, let free):
            return
                "checkpoint \(checkpoint): no space left on device: it needs about \(megabytes(needed)) MB, "
                + "\(folder) has \(free.map { "\(megabytes($0)) MB" } ?? "?") free; the earlier checkpoints and "
                + "latest are intact"
        case .invalidFlag(_, let message): return message
        case .noShards(let folder, let split):
            return "--data \(folder): no *\(split)*.bin shard; create them with baton prepare TEXT --out DIR"
        }
    }

    public var description: String { message }

    /// True for a write that failed because the disk is full.
    public var isDiskFull: Bool {
        switch self {
        case .fileWriteFailed(_, _, let code, _): return code == ENOSPC
        case .checkpointDiskFull: return true
        default: return false
        }
    }
}

/// Why a backend could not be opened: each step of finding, loading and opening it.
public enum BackendUnavailable: Equatable, CustomStringConvertible, Sendable {
    case noLibrary(path: String)
    case cannotLoad(path: String, reason: String)
    case notABackend(path: String, reason: String)
    case noTable(path: String)
    case abiMismatch(path: String, found: Int, expected: Int)
    case noDriver(detail: String)
    case noDevice(detail: String)
    case cannotOpen(detail: String)

    public var description: String {
        switch self {
        case .noLibrary(let path):
            return "no CUDA backend library at \(path) (build it with cmake, see the README, or set BATON_CUDA_LIBRARY)"
        case .cannotLoad(let path, let reason): return "cannot load \(path): \(reason)"
        case .notABackend(let path, let reason): return "\(path) is not a Baton backend (\(reason))"
        case .noTable(let path): return "\(path) returned no function table"
        case .abiMismatch(let path, let found, let expected):
            return
                "version mismatch: \(path) speaks backend ABI \(found), this baton speaks \(expected); rebuild the "
                + "library from this version's Kernels/"
        case .noDriver(let detail): return "no usable NVIDIA driver (\(detail))"
        case .noDevice(let detail): return "no CUDA device (\(detail))"
        case .cannotOpen(let detail): return "the GPU could not be opened (\(detail))"
        }
    }
}

/// baton_status, as Swift sees it.
public enum DeviceStatus: Int32, Sendable {
    case ok = 0, noDriver = 1, noDevice = 2, outOfMemory = 3, device = 4
}

private func megabytes(_ bytes: Int) -> String { String(format: "%.1f", Double(bytes) / 1e6) }
