import Baton
import Foundation

let checkpointsSpec = CommandSpec(
    name: "checkpoints", summary: "List a run's checkpoints: step, epoch, loss, size, and whether every file verifies.",
    usage: "baton checkpoints RUN", options: [], takesArguments: true)

func checkpointsCommand(_ arguments: [String]) throws {
    guard let parsed = try checkpointsSpec.parse(arguments) else { return }
    let run = URL(fileURLWithPath: try parsed.onlyArgument("RUN folder"))
    guard FileManager.default.fileExists(atPath: run.path) else { throw BatonError("\(run.path): no such run folder") }
    let store = CheckpointStore(runFolder: run)
    let steps = store.steps()
    guard !steps.isEmpty else { print("no checkpoints in \(store.folder.path)"); return }
    let latest = store.latestName()
    print("checkpoint        epoch    loss        size  status")
    for step in steps {
        let url = store.url(step: step)
        let size = folderSize(url)
        let marker = url.lastPathComponent == latest ? "  (latest)" : ""
        do {
            let state = try CheckpointStore.verify(url)
            let loss = state.lastLoss.map { String(format: "%.4f", $0) } ?? "-"
            print(
                "\(url.lastPathComponent)  \(pad(String(state.epoch), 6))  \(pad(loss, 7))  "
                    + "\(pad(formatBytes(size), 10))  verified\(marker)"
            )
        } catch {
            print(
                "\(url.lastPathComponent)  \(pad("-", 6))  \(pad("-", 7))  \(pad(formatBytes(size), 10))  corrupt: "
                    + "\(error)\(marker)"
            )
        }
    }
    if let latest, !steps.map({ CheckpointStore.name(step: $0) }).contains(latest) {
        print("latest names \(latest), which is missing")
    }
}

func pad(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }

func formatBytes(_ bytes: Int) -> String {
    if bytes >= 1 << 30 { return String(format: "%.2f GB", Double(bytes) / Double(1 << 30)) }
    if bytes >= 1 << 20 { return String(format: "%.1f MB", Double(bytes) / Double(1 << 20)) }
    return String(format: "%.1f KB", Double(bytes) / 1024)
}

func folderSize(_ url: URL) -> Int {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
    return names.reduce(0) { total, name in
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.appendingPathComponent(name).path)
        return total + ((attributes?[.size] as? NSNumber)?.intValue ?? 0)
    }
}
