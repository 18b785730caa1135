import CBatonSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Which checkpoint a run should continue from.
public enum ResumeRequest: Equatable, Sendable {
    case auto
    case step(Int)
    case path(String)

    /// "auto", "step-N" or a path.
    public init(_ text: String) {
        if text == "auto" { self = .auto; return }
        if text.hasPrefix("step-"), let step = Int(text.dropFirst(5)), step >= 0, !text.contains("/") {
            self = .step(step); return
        }
        self = .path(text)
    }
}

/// The three flat buffers a checkpoint holds, in the model's parameter layout, on their device:
/// saves read them and loads write them in place, with no intermediate copy on the CPU.
public struct CheckpointTensors {
    public let device: Device
    public let parameters: Tensor
    public let firstMoment: Tensor
    public let secondMoment: Tensor
    /// Where in the flat layout the moments start: 0, or with ZeRO-1 this rank's slice's start
    /// (a load then reads only that slice of the stored moments; saves always get whole ones).
    public var momentsStart = 0
}

/// Where a save reads the three buffers from, as float32 host memory: the device's own memory
/// (CheckpointTensors) or a host copy made earlier (CheckpointSnapshot, for an asynchronous save).
public protocol CheckpointSource {
    func withParameters<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R
    func withMoments<R>(
        _ body: (_ first: UnsafeBufferPointer<Float>, _ second: UnsafeBufferPointer<Float>) throws -> R
    )
        throws -> R
}

extension CheckpointTensors: CheckpointSource {
    public func withParameters<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        try device.withHostMemory(of: parameters, body)
    }

    public func withMoments<R>(_ body: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) throws -> R) throws -> R
    {
        try device.withHostMemory(of: firstMoment) { m in
            try device.withHostMemory(of: secondMoment) { try body(m, $0) }
        }
    }
}

/// `RUN/checkpoints/`: one folder per checkpoint (`step-NNNNNNNN`), a `latest` pointer, atomic
/// saves, verification, retention. Every save goes through `save`, with the overwrite policy
/// passed down, so no layer can refuse what the user asked for.
public struct CheckpointStore {
    public static let modelFile = "model.safetensors"
    public static let optimizerFile = "optimizer.safetensors"
    public static let stateFile = "state.json"

    public let runFolder: URL
    public var folder: URL { runFolder.appendingPathComponent("checkpoints") }
    public var latestURL: URL { folder.appendingPathComponent("latest") }

    public init(runFolder: URL) { self.runFolder = runFolder }

    public static func name(step: Int) -> String {
        let digits = String(step)
        return "step-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }

    public func url(step: Int) -> URL { folder.appendingPathComponent(CheckpointStore.name(step: step)) }

    /// The checkpoint folders present, oldest first (whatever their state).
    public func steps() -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.compactMap { name -> Int? in
            guard name.hasPrefix("step-"), name.count == 13, let step = Int(name.dropFirst(5)), step >= 0 else {
                return nil
            }
            return step
        }.sorted()
    }

    /// The folder `latest` names, if the file exists, is small, and names a step folder
    /// (anything else is treated as no pointer: the folders themselves are the truth).
    public func latestName() -> String? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: latestURL.path),
            ((attributes[.size] as? NSNumber)?.intValue ?? Int.max) <= 64,
            let data = FileManager.default.contents(atPath: latestURL.path),
            let text = String(data: data, encoding: .utf8)
        else { return nil }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard name.hasPrefix("step-"), name.count == 13, name.dropFirst(5).allSatisfy({ $0 >= "0" && $0 <= "9" }) else {
            return nil
        }
        return name
    }

    // MARK: verification

    /// Reads state.json and checks every file it lists: present, the recorded size, the recorded
    /// CRC32C. Throws a one-line reason naming the checkpoint.
    public static func verify(_ checkpoint: URL) throws -> CheckpointState {
        let path = checkpoint.path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else {
            throw BatonError("\(path): no such checkpoint folder")
        }
        let stateURL = checkpoint.appendingPathComponent(stateFile)
        guard let stateData = FileManager.default.contents(atPath: stateURL.path) else {
            throw BatonError("\(path): missing \(stateFile)")
        }
        let state = try CheckpointState.decode(stateData, path: path)
        for required in [modelFile, optimizerFile] where state.files[required] == nil {
            throw BatonError("\(path): \(stateFile) lists no checksum for \(required)")
        }
        for (name, check) in state.files.sorted(by: { $0.key < $1.key }) {
            guard !name.contains("/") else {
                throw BatonError("\(path): \(stateFile) names a file outside the checkpoint: \(name)")
            }
            let file = checkpoint.appendingPathComponent(name)
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: file.path),
                let size = (attributes[.size] as? NSNumber)?.intValue
            else {
                throw BatonError("\(path): missing \(name)")
            }
            guard size == check.bytes else {
                throw BatonError(
                    "\(path): \(name) is \(size) bytes, \(stateFile) says \(check.bytes) (truncated or replaced)")
            }
            let crc = try crc32c(of: file)
            guard TensorFile.hex(crc) == check.crc32c.lowercased() else {
                throw BatonError(
                    "\(path): \(name) fails its checksum (crc32c \(TensorFile.hex(crc)), expected \(check.crc32c)): "
                        + "the file is damaged"
                )
            }
        }
        return state
    }

    /// CRC32C of a whole file, read sequentially in 16 MB chunks (faster from a cold disk than
    /// faulting in a memory map page by page).
    static func crc32c(of url: URL) throws -> UInt32 {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw BatonError("\(url.path): cannot read (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        let chunk = 16 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        var crc: UInt32 = 0
        while true {
            let n = read(fd, buffer, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                throw BatonError("\(url.path): read failed (\(String(cString: strerror(errno))))")
            }
            if n == 0 { return crc }
            crc = baton_crc32c(crc, buffer, n)
        }
    }

    /// Finds the checkpoint a resume asked for. `auto` takes the newest one that verifies, saying
    /// why it skipped any; it returns nil when there is none. An explicit step or path must verify.
    public func resolve(_ request: ResumeRequest, log: (String) -> Void) throws -> VerifiedCheckpoint? {
        switch request {
        case .auto:
            if let latest = latestName(),
                !FileManager.default.fileExists(atPath: folder.appendingPathComponent(latest).path)
            {
                log("checkpoint: latest names \(latest), which is missing; looking for the newest good checkpoint")
            }
            for step in steps().reversed() {
                let candidate = url(step: step)
                do { return try VerifiedCheckpoint(verifying: candidate) } catch {
                    log("checkpoint: skipping corrupt \(CheckpointStore.name(step: step)): \(error)")
                }
            }
            return nil
        case .step(let step):
            return try explicit(
                url(step: step),
                named: "--resume \(CheckpointStore.name(step: step)): no such checkpoint in \(folder.path)")
        case .path(let path):
            return try explicit(URL(fileURLWithPath: path), named: "--resume \(path): no such checkpoint folder")
        }
    }

    /// A checkpoint the user named: it must exist (else the error lists the steps there are) and verify.
    private func explicit(_ candidate: URL, named missing: String) throws -> VerifiedCheckpoint {
        guard FileManager.default.fileExists(atPath: candidate.path) else {
            let have = steps().map { CheckpointStore.name(step: $0) }
            throw BatonError("\(missing) (this run has: \(have.isEmpty ? "none" : have.joined(separator: ", ")))")
        }
        return try VerifiedCheckpoint(verifying: candidate)
    }

    // MARK: saving

    /// Saves a checkpoint atomically: everything is written into a fresh temporary sibling folder
    /// and fsynced, the folder is renamed into place (an existing one is swapped out atomically,
    /// with `overwrite`, or when it is corrupt), then `latest` is replaced (temporary file +
    /// rename). A crash at any instant leaves every earlier checkpoint and `latest` usable.
    /// `midSave` (tests only, see FaultPlan) runs between the model file and the optimizer file.
    /// `writeOptimizer`, when given, writes the optimizer file at the URL it gets instead of
    /// `tensors`' moments (ZeRO-1: every rank writes its slice's part of it, SlicedMomentWrite).
    @discardableResult
    public func save(
        step: Int, tensors: some CheckpointSource, layout: ParameterLayout,
        describe: ([String: CheckpointState.FileCheck]) -> CheckpointState,
        overwrite: Bool, midSave: ((Int, URL) throws -> Void)? = nil,
        writeOptimizer: ((URL) throws -> CheckpointState.FileCheck)? = nil, log: (String) -> Void
    ) throws -> URL {
        let fileManager = FileManager.default
        let target = url(step: step)
        var replacing = false, replacingCorrupt = false
        if fileManager.fileExists(atPath: target.path) {
            do {
                _ = try CheckpointStore.verify(target)
            } catch {
                log("checkpoint: replacing corrupt \(target.lastPathComponent) (\(error))")
                replacingCorrupt = true
            }
            guard overwrite || replacingCorrupt else { throw BatonError.checkpointExists(path: target.path) }
            replacing = true
        }
        do { try fileManager.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
            throw BatonError("\(folder.path): cannot create checkpoints folder (\(error.localizedDescription))")
        }
        let temporary = folder.appendingPathComponent(".tmp-\(CheckpointStore.name(step: step))-\(getpid())")
        try? fileManager.removeItem(at: temporary)
        do {
            try fileManager.createDirectory(at: temporary, withIntermediateDirectories: false)
        } catch { throw BatonError("\(temporary.path): cannot create (\(error.localizedDescription))") }
        do {
            var files: [String: CheckpointState.FileCheck] = [:]
            let modelEntries = layout.specs.map { TensorFile.Entry(name: $0.name, shape: $0.shape) }
            // The tensors' parts of each flat buffer, the embedding's padded rows left out.
            let ranges = layout.storedRanges
            func stored(_ buffer: UnsafeBufferPointer<Float>) -> [UnsafeBufferPointer<Float>] {
                ranges.map { UnsafeBufferPointer(rebasing: buffer[$0]) }
            }
            files[CheckpointStore.modelFile] = try tensors.withParameters {
                try TensorFile.write(
                    temporary.appendingPathComponent(CheckpointStore.modelFile), entries: modelEntries,
                    segments: stored($0),
                    metadata: ModelWeights.metadata(for: layout.config))
            }
            try midSave?(step, temporary)
            let optimizerURL = temporary.appendingPathComponent(CheckpointStore.optimizerFile)
            files[CheckpointStore.optimizerFile] =
                try writeOptimizer?(optimizerURL)
                ?? tensors.withMoments { m, v in
                    try TensorFile.write(
                        optimizerURL, entries: CheckpointStore.momentEntries(layout), segments: stored(m) + stored(v),
                        metadata: CheckpointStore.momentMetadata)
                }
            let stateData = try describe(files).encoded()
            let writer = try FileWriter(
                url: temporary.appendingPathComponent(CheckpointStore.stateFile), expectedBytes: stateData.count)
            try stateData.withUnsafeBytes { try writer.write($0) }
            try writer.sync()
            writer.close()
            AtomicFile.syncFolder(temporary)
            try moveIntoPlace(temporary, target, replacing: replacing)
        } catch {
            try? fileManager.removeItem(at: temporary)
            if let error = error as? BatonError, error.isDiskFull {
                let free =
                    ((try? fileManager.attributesOfFileSystem(forPath: folder.path))?[.systemFreeSize] as? NSNumber)?
                    .intValue
                throw BatonError.checkpointDiskFull(
                    checkpoint: target.lastPathComponent, neededBytes: 3 * layout.storedCount * 4,
                    folder: folder.path, freeBytes: free)
            }
            throw error
        }
        AtomicFile.syncFolder(folder)
        try AtomicFile.write(Data((target.lastPathComponent + "\n").utf8), to: latestURL)
        return target
    }

    /// The optimizer file's tensors: each parameter's first moments, then each one's second.
    static func momentEntries(_ layout: ParameterLayout) -> [TensorFile.Entry] {
        layout.specs.map { TensorFile.Entry(name: $0.name + ".exp_avg", shape: $0.shape) }
            + layout.specs.map { TensorFile.Entry(name: $0.name + ".exp_avg_sq", shape: $0.shape) }
    }

    static let momentMetadata = ["format": "pt", "baton.optimizer": "adamw"]

    private func moveIntoPlace(_ temporary: URL, _ target: URL, replacing: Bool) throws {
        guard replacing else {
            guard rename(temporary.path, target.path) == 0 else {
                throw BatonError(
                    "\(target.path): cannot move checkpoint into place (\(String(cString: strerror(errno))))")
            }
            return
        }
        // Swap the complete new folder with the old one in one step, then delete the old one.
        if baton_rename_exchange(temporary.path, target.path) == 0 {
            try? FileManager.default.removeItem(at: temporary)
            return
        }
        // File systems without RENAME_EXCHANGE: move the old one aside first.
        let aside = folder.appendingPathComponent(".old-\(target.lastPathComponent)-\(getpid())")
        guard rename(target.path, aside.path) == 0, rename(temporary.path, target.path) == 0 else {
            throw BatonError("\(target.path): cannot replace checkpoint (\(String(cString: strerror(errno))))")
        }
        try? FileManager.default.removeItem(at: aside)
    }

    /// Deletes a checkpoint so that no crash can leave half of it looking like a checkpoint: the
    /// folder is first renamed out of the step-N namespace (atomic), then removed.
    @discardableResult
    public func delete(step: Int) -> Bool {
        let trash = folder.appendingPathComponent(".trash-\(CheckpointStore.name(step: step))-\(getpid())")
        guard rename(url(step: step).path, trash.path) == 0 else { return false }
        try? FileManager.default.removeItem(at: trash)
        return true
    }

    /// Cleans up after saves and deletions that a crash interrupted. A `.tmp-` folder was never renamed into
    /// place, so it is never a checkpoint: deleted. An `.old-step-N-` folder is a complete earlier
    /// checkpoint moved aside for a replacement: put back if step-N is missing, else deleted. A
    /// `.trash-` folder was on its way out (retention): deleted.
    public func removeAbandonedSaves(log: (String) -> Void) {
        let fileManager = FileManager.default
        let names = (try? fileManager.contentsOfDirectory(atPath: folder.path)) ?? []
        for name in names where name.hasPrefix(".old-step-") {
            let stepName = String(name.dropFirst(5).prefix(13))
            let target = folder.appendingPathComponent(stepName)
            if !fileManager.fileExists(atPath: target.path),
                (try? fileManager.moveItem(at: folder.appendingPathComponent(name), to: target)) != nil
            {
                log("checkpoint: restored \(stepName), moved aside by a replacement that did not finish")
            }
        }
        for name in names where name.hasPrefix(".tmp-") || name.hasPrefix(".old-") || name.hasPrefix(".trash-") {
            if (try? fileManager.removeItem(at: folder.appendingPathComponent(name))) != nil {
                log("checkpoint: removed \(name), left by a save that did not finish")
            }
        }
    }

    // MARK: retention

    /// Deletes checkpoints beyond the newest `keepLast`, except milestones (step % keepEvery == 0)
    /// and `protected` (the one just written). Returns the steps it deleted.
    @discardableResult
    public func applyRetention(keepLast: Int, keepEvery: Int, protected: Int) -> [Int] {
        let all = steps()
        let recent = Set(all.suffix(max(keepLast, 1)))
        var removed: [Int] = []
        for step in all where !recent.contains(step) && step != protected && !(keepEvery > 0 && step % keepEvery == 0) {
            if delete(step: step) { removed.append(step) }
        }
        return removed
    }

    // MARK: loading

    /// Loads a verified checkpoint's tensors into `tensors`, checking every name and shape
    /// against `layout`: each tensor goes from the (memory-mapped) file straight to the device.
    public static func loadTensors(
        from checkpoint: URL, layout: ParameterLayout, into tensors: CheckpointTensors
    ) throws {
        let model = try SafeTensors.read(checkpoint.appendingPathComponent(modelFile))
        let optimizer = try SafeTensors.read(checkpoint.appendingPathComponent(optimizerFile))
        try model.upload(layout: layout, suffix: "", to: tensors.parameters, device: tensors.device)
        try optimizer.upload(
            layout: layout, suffix: ".exp_avg", to: tensors.firstMoment, at: tensors.momentsStart,
            device: tensors.device)
        try optimizer.upload(
            layout: layout, suffix: ".exp_avg_sq", to: tensors.secondMoment, at: tensors.momentsStart,
            device: tensors.device)
    }
}

extension SafeTensors.File {
    /// Uploads the tensors named `spec.name + suffix`, for every spec, into `destination` (a
    /// flat buffer in layout order, or the part of one from element `start` on: each tensor's
    /// elements that fall in it), after checking every name, dtype and shape.
    func upload(
        layout: ParameterLayout, suffix: String, to destination: Tensor, at start: Int = 0, device: Device
    ) throws {
        var found: [(ParameterSpec, SafeTensors.Entry)] = []
        for spec in layout.specs {
            let name = spec.name + suffix
            guard let entry = entries[name] else { throw BatonError("\(url.path): missing tensor \(name)") }
            guard entry.shape == spec.shape else {
                throw BatonError("\(url.path): tensor \(name) has shape \(entry.shape), the model needs \(spec.shape)")
            }
            guard entry.dtype == "F32" else {
                throw BatonError("\(url.path): tensor \(name) is \(entry.dtype), expected F32")
            }
            found.append((spec, entry))
        }
        let window = start..<(start + destination.count)
        for (spec, entry) in found {
            let part = (spec.offset..<(spec.offset + spec.count)).clamped(to: window)
            guard !part.isEmpty else { continue }
            try withFloats(entry) {
                try device.upload(
                    UnsafeBufferPointer(
                        rebasing: $0[(part.lowerBound - spec.offset)..<(part.upperBound - spec.offset)]),
                    to: destination.slice(part.lowerBound - start, part.count))
            }
        }
    }
}
