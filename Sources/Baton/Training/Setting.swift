import Foundation

/// A value a setting can hold: read from a flag's text, written back in --help, notices and errors.
public protocol SettingValue: Codable, Equatable, Sendable {
    /// The value a flag's text gives; nil when the text is not one.
    init?(settingText: String)
    /// How --help, notices and errors write the value.
    var settingText: String { get }
    /// The value as a number, for bounds; nil for words and unset values.
    var settingNumber: Double? { get }
    /// What a value is, for errors: "a whole number", "stop or skip".
    static var settingKind: String { get }
}

/// A setting whose values are a closed list of words (`--reduce exact|fast`): the flag's
/// placeholder, the parser's check and the error all come from the cases.
public protocol SettingMode: SettingValue, RawRepresentable, CaseIterable where RawValue == String {}

extension SettingMode {
    public init?(settingText: String) { self.init(rawValue: settingText) }
    public var settingText: String { rawValue }
    public var settingNumber: Double? { nil }
    public static var settingKind: String { wordList }
    /// "stop or skip", "fp32, tf32 or bf16".
    public static var wordList: String {
        let words = allCases.map(\.rawValue)
        return words.count == 1 ? words[0] : words.dropLast().joined(separator: ", ") + " or " + words.last!
    }
}

extension Int: SettingValue {
    public init?(settingText: String) { self.init(settingText) }
    public var settingText: String { String(self) }
    public var settingNumber: Double? { Double(self) }
    public static var settingKind: String { "a whole number" }
}

extension UInt64: SettingValue {
    public init?(settingText: String) { self.init(settingText) }
    public var settingText: String { String(self) }
    public var settingNumber: Double? { Double(self) }
    public static var settingKind: String { "a whole number >= 0" }
}

extension Float: SettingValue {
    public init?(settingText: String) {
        guard let value = Float(settingText), value.isFinite else { return nil }
        self = value
    }
    /// Swift's shortest form, except that a small power of ten is written as an exponent (1e-3).
    public var settingText: String {
        if self > 0 && self < 0.01 {
            // From the shortest decimal form, so 1e-4 (a float a little below it) reads as 1e-4.
            let value = Double(description)!
            var exponent = Int(Foundation.log10(value).rounded(.down))
            if value / Foundation.pow(10, Double(exponent)) >= 10 - 1e-9 { exponent += 1 }
            let mantissa = value / Foundation.pow(10, Double(exponent))
            if abs(mantissa - mantissa.rounded()) < 1e-6 { return "\(Int(mantissa.rounded()))e\(exponent)" }
        }
        return description
    }
    public var settingNumber: Double? { Double(self) }
    public static var settingKind: String { "a number" }
}

extension String: SettingValue {
    public init?(settingText: String) { self = settingText }
    public var settingText: String { self }
    public var settingNumber: Double? { nil }
    public static var settingKind: String { "text" }
}

extension Optional: SettingValue where Wrapped: SettingValue {
    public init?(settingText: String) {
        guard let value = Wrapped(settingText: settingText) else { return nil }
        self = .some(value)
    }
    public var settingText: String { map(\.settingText) ?? "none" }
    public var settingNumber: Double? { flatMap(\.settingNumber) }
    public static var settingKind: String { Wrapped.settingKind }
}

/// What a resume may do with a setting that differs from the checkpoint's.
public enum ResumeRule: Sendable {
    /// The checkpoint's value stands: a different one is refused (the model's shape), unless the
    /// flag `unless` names is given (`--global-batch` with `--allow-batch-change`).
    case refuse(unless: String? = nil)
    /// The new value is taken, and the resume says so in one line.
    case notice
    /// The new value is taken silently: it cannot change what the run computes.
    case free
}

/// The numbers a setting accepts, each kind with its own words in an error.
public enum SettingBounds: Sendable {
    case any
    /// A whole number from `min` (0: "must not be negative", else "must be at least min") up to
    /// `max` ("larger than Baton supports").
    case whole(min: Int, max: Int?)
    /// A finite number >= 0.
    case nonNegative
    /// A number in [0, 1): AdamW's betas.
    case fraction

    /// Why `number` is out of bounds ("must be at least 1, got 0"), or nil.
    func violation(_ number: Double?, text: String) -> String? {
        guard let number else { return nil }
        switch self {
        case .any: return nil
        case .whole(let min, let max):
            if number < Double(min) {
                return min == 0 ? "must not be negative, got \(text)" : "must be at least \(min), got \(text)"
            }
            if let max, number > Double(max) { return "\(text) is larger than Baton supports (\(max))" }
            return nil
        case .nonNegative:
            return number >= 0 && number.isFinite ? nil : "must be a finite number >= 0, got \(text)"
        case .fraction:
            return number >= 0 && number < 1 ? nil : "must be in [0, 1), got \(text)"
        }
    }
}

/// One setting's declaration: its flag, the placeholder that says what its value is, its help
/// (where `{}` stands for the default), its bounds and its resume rule. Its key in config.json
/// and its type and default are those of the property it wraps.
public struct SettingDeclaration: Sendable {
    public let flag: String
    public let placeholder: String
    public let help: String
    public let bounds: SettingBounds
    public let resume: ResumeRule
}

/// Declares a config property as a setting: `@Setting("--batch", "B", "sequences per micro-batch
/// (default {})", .whole(min: 1, max: 65536)) public var batchSize = 12` is the whole of it: the
/// parser, --help, `--config` files, config.json, the checks and the resume comparison follow.
/// It encodes as the bare value, so files are as if the property were plain.
@propertyWrapper
public struct Setting<Value: SettingValue>: Sendable {
    public var wrappedValue: Value
    public let declaration: SettingDeclaration

    public init(
        wrappedValue: Value, _ flag: String, _ placeholder: String, _ help: String, _ bounds: SettingBounds = .any,
        resume: ResumeRule = .notice
    ) {
        self.wrappedValue = wrappedValue
        declaration = SettingDeclaration(
            flag: flag, placeholder: placeholder, help: help, bounds: bounds, resume: resume)
    }

    /// A mode's placeholder is its words: `--reduce exact|fast`.
    public init(wrappedValue: Value, _ flag: String, _ help: String, resume: ResumeRule = .notice)
    where Value: SettingMode {
        self.init(
            wrappedValue: wrappedValue, flag, Value.allCases.map(\.rawValue).joined(separator: "|"), help,
            resume: resume)
    }

    public init<Mode: SettingMode>(wrappedValue: Value, _ flag: String, _ help: String, resume: ResumeRule = .notice)
    where Value == Mode? {
        self.init(
            wrappedValue: wrappedValue, flag, Mode.allCases.map(\.rawValue).joined(separator: "|"), help, resume: resume
        )
    }

    /// Read from a file: the declaration is the type's, found by key (see `SettingTable`).
    init(decoded value: Value) {
        wrappedValue = value
        declaration = SettingDeclaration(flag: "", placeholder: "", help: "", bounds: .any, resume: .notice)
    }
}

extension Setting: Equatable {
    public static func == (a: Setting, b: Setting) -> Bool { a.wrappedValue == b.wrappedValue }
}

extension Setting: Codable {
    public init(from decoder: Decoder) throws {
        self.init(decoded: try decoder.singleValueContainer().decode(Value.self))
    }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(wrappedValue)
    }
}

/// An optional setting that is unset has no key in the file, as an optional property would not;
/// a file without the key reads as unset.
protocol OptionalSetting {
    var isUnset: Bool { get }
    static var unset: Self { get }
}

extension Optional: OptionalSetting {
    var isUnset: Bool { self == nil }
    static var unset: Self { nil }
}

extension KeyedEncodingContainer {
    public mutating func encode<Value>(_ setting: Setting<Value>, forKey key: Key) throws {
        if let optional = setting.wrappedValue as? OptionalSetting, optional.isUnset { return }
        try encode(setting.wrappedValue, forKey: key)
    }
}

extension KeyedDecodingContainer {
    public func decode<Value>(_ type: Setting<Value>.Type, forKey key: Key) throws -> Setting<Value> {
        if let optional = Value.self as? OptionalSetting.Type, !contains(key) {
            return Setting(decoded: optional.unset as! Value)
        }
        do {
            return Setting(decoded: try decode(Value.self, forKey: key))
        } catch DecodingError.dataCorrupted, DecodingError.typeMismatch {
            // One line naming the key and what it takes: "config.reduce expects exact or fast, got 'quick'".
            let path = (codingPath + [key]).map(\.stringValue).joined(separator: ".")
            let got =
                (try? decode(String.self, forKey: key)).map { "'\($0)'" } ?? (try? decode(Double.self, forKey: key)).map
            { "\($0)" } ?? "another kind"
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: codingPath + [key], debugDescription: "\(path) expects \(Value.settingKind), got \(got)"
                ))
        }
    }
}

/// A setting seen without its type: what the table, --help and the checks use.
protocol AnySetting: Sendable {
    var declaration: SettingDeclaration { get }
    var valueText: String { get }
    var valueNumber: Double? { get }
    /// What a value is, for errors: "a whole number", "stop or skip".
    var kind: String { get }
    var recordedText: String { get }
    /// Whether a JSON value (from a file) is one of this setting's values.
    func accepts(json: Any) -> Bool
    /// A flag's text as the JSON value a file would hold, nil when the text is not a value.
    func json(fromText text: String) -> Any?
    /// Whether `text`, JSON as Overrides holds it, is this setting's value (10000 is 10000.0).
    func holds(json text: String) -> Bool
}

extension Setting: AnySetting {
    var valueText: String { wrappedValue.settingText }
    var valueNumber: Double? { wrappedValue.settingNumber }
    var kind: String { Value.settingKind }

    var recordedText: String {
        if let optional = wrappedValue as? OptionalSetting, optional.isUnset { return "none" }
        if let word = wrappedValue as? String { return word }
        guard let data = try? JSONEncoder().encode(wrappedValue) else { return valueText }
        let text = String(decoding: data, as: UTF8.self)
        return text.hasPrefix("\"") ? valueText : text
    }

    func accepts(json: Any) -> Bool {
        guard let data = try? JSONSerialization.data(withJSONObject: json, options: .fragmentsAllowed) else {
            return false
        }
        return (try? JSONDecoder().decode(Value.self, from: data)) != nil
    }

    func holds(json text: String) -> Bool {
        (try? JSONDecoder().decode(Value.self, from: Data(text.utf8))) == wrappedValue
    }

    func json(fromText text: String) -> Any? {
        guard let value = Value(settingText: text), let data = try? JSONEncoder().encode(value) else { return nil }
        return try? JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed)
    }
}

/// A setting of a particular config: its key in config.json ("batchSize", "model.layers"), its
/// declaration and the config's value.
public struct SettingEntry: Sendable {
    public let key: String
    let declaration: SettingDeclaration
    let setting: AnySetting

    public var flag: String { declaration.flag }
    public var placeholder: String { declaration.placeholder }
    public var resume: ResumeRule { declaration.resume }
    /// The value as --help and notices write it.
    public var valueText: String { setting.valueText }
    /// The value as config.json holds it (a word without quotes; "none" where unset), for notices.
    public var recordedText: String { setting.recordedText }
    /// The help line, its `{}` filled with this entry's value (the default, for the table's).
    public var help: String { declaration.help.replacingOccurrences(of: "{}", with: setting.valueText) }
    /// Why the value is out of bounds ("must be at least 1, got 0"), or nil.
    var violation: String? { declaration.bounds.violation(setting.valueNumber, text: setting.valueText) }
}

enum SettingTable {
    /// The settings of `value` (a config), in declaration order, nested configs' under their key.
    /// A config read from a file holds values only: each declaration is the one its type's
    /// property carries in a config made in code.
    static func entries(of value: Any, prefix: String = "") -> [SettingEntry] {
        Mirror(reflecting: value).children.flatMap { child -> [SettingEntry] in
            guard let label = child.label else { return [] }
            if let setting = child.value as? AnySetting {
                // A wrapped property's storage is named with a leading underscore.
                let name = String(label.dropFirst())
                let declaration =
                    setting.declaration.flag.isEmpty ? declarations["\(type(of: value)).\(name)"]! : setting.declaration
                return [SettingEntry(key: prefix + name, declaration: declaration, setting: setting)]
            }
            return entries(of: child.value, prefix: prefix + label + ".")
        }
    }

    /// Every declaration, by owning type and property ("GPTConfig.layers").
    static let declarations: [String: SettingDeclaration] = {
        var table: [String: SettingDeclaration] = [:]
        func walk(_ value: Any) {
            for child in Mirror(reflecting: value).children {
                guard let label = child.label else { continue }
                if let setting = child.value as? AnySetting {
                    table["\(type(of: value)).\(label.dropFirst())"] = setting.declaration
                } else {
                    walk(child.value)
                }
            }
        }
        walk(TrainingConfig())
        return table
    }()
}

extension Bool: SettingValue {
    public init?(settingText: String) {
        switch settingText {
        case "true": self = true
        case "false": self = false
        default: return nil
        }
    }
    public var settingText: String { self ? "true" : "false" }
    public var settingNumber: Double? { nil }
    public static var settingKind: String { "true or false" }
}
