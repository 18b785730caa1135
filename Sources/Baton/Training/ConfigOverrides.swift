import Foundation

extension TrainingConfig {
    /// Setting values given for a run by key ("batchSize", "model.layers"), from flags and from a
    /// --config file (flags win): applied over the defaults for a fresh run, or over the
    /// checkpoint's config for a resumed one.
    public struct Overrides: Sendable {
        /// Each value as the JSON a config file holds for it ("12", "\"fast\"").
        private var values: [String: String] = [:]
        /// A --config file's initFrom: the Hugging Face folder its run started from.
        public var initFrom: InitSource?

        public init() {}

        public func given(_ key: String) -> Bool { values[key] != nil }

        public func value<Value: Decodable>(_ key: String, as type: Value.Type) -> Value? {
            values[key].flatMap { try? JSONDecoder().decode(Value.self, from: Data($0.utf8)) }
        }

        /// A flag's value, already checked against its placeholder by the parser.
        public mutating func set(_ entry: SettingEntry, text: String) throws {
            guard let json = entry.setting.json(fromText: text) else {
                throw BatonError.invalidFlag(
                    flag: entry.flag, message: "\(entry.flag) expects \(entry.setting.kind), got '\(text)'")
            }
            values[entry.key] = try Self.text(json)
        }

        /// These values with `other`'s over them. `steps` alone there replaces `epochs` here: both
        /// say how long the run is.
        public func overridden(by other: Overrides) -> Overrides {
            var merged = self
            if other.given("steps") && !other.given("epochs") { merged.values["epochs"] = nil }
            merged.values.merge(other.values) { $1 }
            merged.initFrom = other.initFrom ?? initFrom
            return merged
        }

        /// A whole model shape (a --model preset) as values: every number it sets.
        public static func model(_ config: GPTConfig) throws -> Overrides {
            var overrides = Overrides()
            let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(config)) as! [String: Any]
            for (key, value) in object { overrides.values["model." + key] = try text(value) }
            return overrides
        }

        static func text(_ json: Any) throws -> String {
            String(
                decoding: try JSONSerialization.data(withJSONObject: json, options: [.fragmentsAllowed, .sortedKeys]),
                as: UTF8.self)
        }

        /// A run described by a file: a config as config.json records it (that whole file, or the
        /// object under its "config" key). Any key may be left out; an unknown key or a value of the
        /// wrong kind or out of bounds is an error naming the file and the key.
        public static func file(_ url: URL) throws -> Overrides {
            let path = url.path
            func invalid(_ text: String) -> BatonError {
                .invalidFlag(flag: "--config", message: "--config \(path): \(text)")
            }
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
                throw invalid("is a folder; give a JSON file, such as a run's config.json")
            }
            let data: Data
            do { data = try Data(contentsOf: url) } catch {
                throw invalid("cannot be read (\(error.localizedDescription))")
            }
            guard var object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw invalid("is not a JSON object; write one like the config.json a run records")
            }
            var prefix = ""
            if let record = object["config"] as? [String: Any], object["baton_version"] != nil {
                object = record; prefix = "config."
            }
            var overrides = Overrides()
            let entries = Dictionary(uniqueKeysWithValues: TrainingConfig.settings.map { ($0.key, $0) })
            func take(_ key: String, _ value: Any) throws {
                if key == "initFrom" {
                    guard let data = try? JSONSerialization.data(withJSONObject: value),
                        let source = try? JSONDecoder().decode(InitSource.self, from: data)
                    else {
                        throw invalid("\(prefix)initFrom expects {\"folder\": ..., \"files\": {...}}")
                    }
                    overrides.initFrom = source
                    return
                }
                if key == "epsilon" {
                    guard let number = value as? Double, number > 0, number.isFinite else {
                        throw invalid("\(prefix)epsilon expects a number > 0")
                    }
                    overrides.values[key] = try text(value)
                    return
                }
                guard let entry = entries[key] else {
                    throw invalid(
                        "unknown key \(prefix)\(key); see baton train --help for the settings (their keys are "
                            + "config.json's)"
                    )
                }
                guard !(value is NSNull), entry.setting.accepts(json: value) else {
                    throw invalid(
                        "\(prefix)\(key) expects \(entry.setting.kind), got \((try? text(value)) ?? "\(value)")")
                }
                overrides.values[key] = try text(value)
            }
            for (key, value) in object.sorted(by: { $0.key < $1.key }) {
                if key == "model" {
                    guard let model = value as? [String: Any] else { throw invalid("\(prefix)model expects an object") }
                    for (inner, value) in model.sorted(by: { $0.key < $1.key }) { try take("model.\(inner)", value) }
                } else {
                    try take(key, value)
                }
            }
            // Bounds, named by the file's keys.
            if let (_, text) = try TrainingConfig().applying(overrides).problem(naming: { key, _ in prefix + key }) {
                throw invalid(text)
            }
            return overrides
        }
    }

    /// This config with `overrides` applied. `--steps` given alone drops a previous `--epochs`.
    public func applying(_ overrides: Overrides) throws -> TrainingConfig {
        let encoded = try JSONEncoder().encode(self)
        guard var object = try JSONSerialization.jsonObject(with: encoded) as? [String: Any],
            var model = object["model"] as? [String: Any]
        else { preconditionFailure("a config encodes as an object") }
        for key in overrides.keys {
            let value = try JSONSerialization.jsonObject(
                with: Data(overrides.valueText(key).utf8), options: .fragmentsAllowed)
            if key.hasPrefix("model.") {
                model[String(key.dropFirst("model.".count))] = value
            } else {
                object[key] = value
            }
        }
        object["model"] = model
        if overrides.given("steps") && !overrides.given("epochs") { object["epochs"] = nil }
        if let initFrom = overrides.initFrom {
            object["initFrom"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(initFrom))
        }
        return try JSONDecoder().decode(TrainingConfig.self, from: JSONSerialization.data(withJSONObject: object))
    }
}

extension TrainingConfig.Overrides {
    var keys: [String] { values.keys.sorted() }
    func valueText(_ key: String) -> String { values[key]! }
}
