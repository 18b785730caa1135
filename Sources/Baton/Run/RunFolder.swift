import Foundation

/// A run's folder: config.json (the training config, the data it read, the device), metrics.jsonl
/// (one line per step) and checkpoints/ (see CheckpointStore).
public struct RunFolder {
    public let url: URL
    public var configURL: URL { url.appendingPathComponent("config.json") }
    public var metricsURL: URL { url.appendingPathComponent("metrics.jsonl") }

    /// True when the folder already has a run's config.
    public var holdsRun: Bool { FileManager.default.fileExists(atPath: configURL.path) }

    /// `--out` as given, or a new folder under runs/ named by the start time. Nothing is created
    /// until writeConfig, once the run's inputs have been checked.
    public static func locate(requested: String?) throws -> RunFolder {
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
                candidate = URL(fileURLWithPath: "runs").appendingPathComponent(
                    "\(formatter.string(from: Date()))-\(suffix)")
                suffix += 1
            }
            url = candidate
        }
        return RunFolder(url: url)
    }

    /// What config.json records.
    public struct Record: Codable {
        public var batonVersion: String
        public var device: String
        public var parameters: Int
        public var trainData: String
        public var valData: String
        public var config: TrainingConfig

        /// config.json's keys.
        enum CodingKeys: String, CodingKey {
            case batonVersion = "baton_version", device, parameters, trainData = "train_data", valData = "val_data",
                config
        }
    }

    /// The training config recorded in config.json, if it is there and reads.
    public func readConfig() -> TrainingConfig? {
        guard let data = FileManager.default.contents(atPath: configURL.path) else { return nil }
        return (try? JSONDecoder().decode(Record.self, from: data))?.config
    }

    public func writeConfig(_ record: Record) throws {
        do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
            throw BatonError("--out \(url.path): cannot create run folder (\(error.localizedDescription))")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(try encoder.encode(record), to: configURL)
    }
}

public let batonVersion = "0.1.0"
