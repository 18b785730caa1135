import Foundation

/// A run's folder: config.json (the training config, the data it read, the device), metrics.jsonl
/// (one line per step) and model.safetensors (written at the end).
public struct RunFolder {
    public let url: URL
    public var configURL: URL { url.appendingPathComponent("config.json") }
    public var metricsURL: URL { url.appendingPathComponent("metrics.jsonl") }
    public var weightsURL: URL { url.appendingPathComponent("model.safetensors") }

    /// `--out` as given, or a new folder under runs/ named by the start time.
    public static func create(requested: String?) throws -> RunFolder {
        let fileManager = FileManager.default
        let url: URL
        if let requested {
            url = URL(fileURLWithPath: requested)
        } else {
            let formatter = DateFormatter()
            formatter.dateFormat = "yyyyMMdd-HHmmss"
            formatter.locale = Locale(identifier: "en_US_POSIX")
            var candidate = URL(fileURLWithPath: "runs").appendingPathComponent(formatter.string(from: Date()))
            var suffix = 2
            while fileManager.fileExists(atPath: candidate.path) {
                candidate = URL(fileURLWithPath: "runs").appendingPathComponent("\(formatter.string(from: Date()))-\(suffix)")
                suffix += 1
            }
            url = candidate
        }
        let folder = RunFolder(url: url)
        if fileManager.fileExists(atPath: folder.configURL.path) {
            throw BatonError("--out \(url.path): folder already holds a run (config.json); choose another --out")
        }
        return folder  // created by writeConfig, once the run's inputs have been checked
    }

    /// What config.json records.
    public struct Record: Codable {
        public var baton_version: String
        public var device: String
        public var parameters: Int
        public var train_data: String
        public var val_data: String
        public var config: TrainingConfig
    }

    public func writeConfig(_ record: Record) throws {
        do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
            throw BatonError("--out \(url.path): cannot create run folder (\(error.localizedDescription))")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(record), to: configURL)
    }
}

public let batonVersion = "0.1.0"
