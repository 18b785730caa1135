/// A flag a command accepts. `placeholder` nil means a switch that takes no value. The placeholder
/// also says what the value is, checked while parsing (see ParsedArguments.check): N, B, K, M, T,
/// C, V, STEP a whole number >= 0; X, S a number >= 0; a|b|c one of those words; anything else
/// (DIR, FILE, PATH, TEXT, a list with an upper-case word) a path or free text.
struct Option {
    let name: String
    let placeholder: String?
    let help: String
}

/// A command's flags, one each: `--name PLACEHOLDER: help`, or `--name: help` for a switch. A line
/// that does not start with `--` continues the help of the flag above it.
func options(_ table: String) -> [Option] {
    var entries: [String] = []
    for line in table.split(separator: "\n") {
        let text = line.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("--") || entries.isEmpty {
            entries.append(text)
        } else {
            entries[entries.count - 1] += " " + text
        }
    }
    return entries.map { text in
        guard let colon = text.range(of: ": ") else { preconditionFailure("option line without ': ': \(text)") }
        let head = text[..<colon.lowerBound].split(separator: " ", maxSplits: 1).map(String.init)
        return Option(
            name: head[0], placeholder: head.count > 1 ? head[1] : nil, help: String(text[colon.upperBound...]))
    }
}

/// A mistake in how the command was called: exit code 2, with a pointer to --help.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Parsed `--flag value`, `--flag=value` and positional arguments for one command.
struct ParsedArguments {
    let command: String
    private(set) var values: [String: String] = [:]
    private(set) var positionals: [String] = []

    init(command: String, arguments: [String], options: [Option]) throws {
        self.command = command
        let byName = Dictionary(uniqueKeysWithValues: options.map { ($0.name, $0) })
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-"), argument != "-" else { positionals.append(argument); continue }
            var name = argument, inlineValue: String?
            if let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            guard let option = byName[name] else {
                throw UsageError("baton \(command): unknown flag \(name) (see baton \(command) --help)")
            }
            if option.placeholder == nil {
                guard inlineValue == nil else { throw UsageError("baton \(command): \(name) takes no value") }
                values[name] = "true"
                continue
            }
            let value: String
            if let inlineValue {
                value = inlineValue
            } else {
                guard index < arguments.count else {
                    throw UsageError("baton \(command): \(name) needs a value (\(option.placeholder!))")
                }
                value = arguments[index]
                index += 1
            }
            try Self.check(value, of: option, command: command)
            values[name] = value
        }
    }

    /// Placeholders that stand for a whole number, and for any number; none of them negative.
    static let wholeNumberPlaceholders: Set<String> = ["N", "B", "K", "M", "T", "C", "V", "STEP"]
    static let numberPlaceholders: Set<String> = ["X", "S"]

    /// Checks a value against its flag's placeholder while parsing, so that a malformed value is a
    /// usage error before any work, for every flag of every command: a number where the placeholder
    /// is one (never negative), one of the words of `a|b|c`. Ranges beyond that are the command's.
    static func check(_ value: String, of option: Option, command: String) throws {
        guard let placeholder = option.placeholder else { return }
        if wholeNumberPlaceholders.contains(placeholder) {
            // (UInt64 too: a seed may be any 64-bit number.)
            guard let number = Int(value) ?? UInt64(value).map({ _ in Int.max }) else {
                throw UsageError("baton \(command): \(option.name) expects a whole number, got '\(value)'")
            }
            guard number >= 0 else {
                throw UsageError("baton \(command): \(option.name) must not be negative, got \(value)")
            }
        } else if numberPlaceholders.contains(placeholder) {
            guard let number = Double(value), number.isFinite else {
                throw UsageError("baton \(command): \(option.name) expects a number, got '\(value)'")
            }
            guard number >= 0 else {
                throw UsageError("baton \(command): \(option.name) must not be negative, got \(value)")
            }
        } else if placeholder.contains("|"), !placeholder.contains(where: \.isUppercase) {
            // A closed list of words (an upper-case alternative, like PATH or DIR, leaves it open).
            let words = placeholder.split(separator: "|").map(String.init)
            guard words.contains(value) else {
                let listed = words.dropLast().joined(separator: ", ") + " or " + words.last!
                throw UsageError("baton \(command): \(option.name) expects \(listed), got '\(value)'")
            }
        }
    }

    func string(_ name: String) -> String? { values[name] }

    /// The one argument besides the flags that the command takes; `what` names it in the error.
    func onlyArgument(_ what: String) throws -> String {
        guard positionals.count == 1 else {
            throw UsageError("baton \(command): give one \(what) (see baton \(command) --help)")
        }
        return positionals[0]
    }
    func flag(_ name: String) -> Bool { values[name] != nil }

    func int(_ name: String) throws -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text) else {
            throw UsageError("baton \(command): \(name) expects a whole number, got '\(text)'")
        }
        return value
    }

    func float(_ name: String) throws -> Float? {
        guard let text = values[name] else { return nil }
        guard let value = Float(text), value.isFinite else {
            throw UsageError("baton \(command): \(name) expects a number, got '\(text)'")
        }
        return value
    }

    func seed(_ name: String) throws -> UInt64? {
        guard let text = values[name] else { return nil }
        guard let value = UInt64(text) else {
            throw UsageError("baton \(command): \(name) expects a whole number >= 0, got '\(text)'")
        }
        return value
    }
}

func helpText(command: String, summary: String, usage: String, options: [Option]) -> String {
    var lines = ["\(summary)", "", "usage: \(usage)", "", "options:"]
    let width = options.map { $0.name.count + ($0.placeholder.map { $0.count + 1 } ?? 0) }.max() ?? 0
    for option in options {
        let left = option.name + (option.placeholder.map { " " + $0 } ?? "")
        lines.append("  " + left + String(repeating: " ", count: width - left.count + 2) + option.help)
    }
    return lines.joined(separator: "\n")
}
