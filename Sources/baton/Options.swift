/// A flag a command accepts. `placeholder` nil means a switch that takes no value.
struct Option {
    let name: String
    let placeholder: String?
    let help: String
}

/// A command's flags, one a line: `--name PLACEHOLDER: help`, or `--name: help` for a switch.
func options(_ table: String) -> [Option] {
    table.split(separator: "\n").map { line in
        let text = line.trimmingCharacters(in: .whitespaces)
        guard let colon = text.range(of: ": ") else { preconditionFailure("option line without ': ': \(text)") }
        let head = text[..<colon.lowerBound].split(separator: " ", maxSplits: 1).map(String.init)
        return Option(name: head[0], placeholder: head.count > 1 ? head[1] : nil, help: String(text[colon.upperBound...]))
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
            if let inlineValue { values[name] = inlineValue; continue }
            guard index < arguments.count else { throw UsageError("baton \(command): \(name) needs a value (\(option.placeholder!))") }
            values[name] = arguments[index]
            index += 1
        }
    }

    func string(_ name: String) -> String? { values[name] }
    func flag(_ name: String) -> Bool { values[name] != nil }

    func int(_ name: String) throws -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text) else { throw UsageError("baton \(command): \(name) expects a whole number, got '\(text)'") }
        return value
    }

    func float(_ name: String) throws -> Float? {
        guard let text = values[name] else { return nil }
        guard let value = Float(text), value.isFinite else { throw UsageError("baton \(command): \(name) expects a number, got '\(text)'") }
        return value
    }

    func seed(_ name: String) throws -> UInt64? {
        guard let text = values[name] else { return nil }
        guard let value = UInt64(text) else { throw UsageError("baton \(command): \(name) expects a whole number >= 0, got '\(text)'") }
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
