import Baton
import Foundation

/// What a subcommand is: its name, one-line summary, usage line and flags. `parse` prints the help
/// and returns nil for --help, so each command reads as: parse, check, act.
struct CommandSpec {
    let name: String
    let summary: String
    let usage: String
    let options: [Option]
    /// Whether the command takes arguments besides its flags (files, a run folder); where it takes
    /// none, a stray word is a usage error rather than silently ignored.
    var takesArguments = false

    func parse(_ arguments: [String]) throws -> ParsedArguments? {
        let parsed = try ParsedArguments(command: name, arguments: arguments, options: options + [helpOption])
        if parsed.flag("--help") {
            print(helpText(command: name, summary: summary, usage: usage, options: options + [helpOption]))
            return nil
        }
        if !takesArguments, let stray = parsed.positionals.first {
            throw UsageError("baton \(name): unexpected argument '\(stray)' (see baton \(name) --help)")
        }
        return parsed
    }
}

let helpOption = Option(name: "--help", placeholder: nil, help: "show this help")

let deviceOptions = options(
    """
    --device cpu|cuda|auto: backend to run on (default auto: CUDA where it loads, else CPU)
    --threads N: CPU threads (default: one per core)
    --attention flash|materialized: attention kernels on a GPU: flash (default: no T x T scores in memory) or
        materialized (the scores kept, as the CPU keeps them)
    """)

/// Settings as flags: each setting's line of --help, in declaration order, with a command's own
/// flags inserted after the setting whose flag keys them.
func settingOptions(_ entries: [SettingEntry], inserting extra: [String: [Option]] = [:]) -> [Option] {
    entries.flatMap { entry in
        [Option(name: entry.flag, placeholder: entry.placeholder, help: entry.help)] + (extra[entry.flag] ?? [])
    }
}

/// The model-shape flags that train and bench share, from the model's settings, after --model.
let modelSettings = TrainingConfig.settings.filter { $0.key.hasPrefix("model.") }
let modelOptions = [presetOption] + settingOptions(modelSettings)

/// --model NAME, listing the presets with their parameter counts.
let presetOption = Option(
    name: "--model", placeholder: "NAME",
    help: "a named shape (flags beside it change its numbers): "
        + ModelPreset.all.map { "\($0.name) (\(millions($0.parameterCount)))" }.joined(separator: ", "))

/// 124,439,808 -> "124.4M".
func millions(_ count: Int) -> String { String(format: "%.1fM", Double(count) / 1e6) }

/// The preset --model names, as setting values (nil without --model).
func presetOverrides(_ parsed: ParsedArguments) throws -> TrainingConfig.Overrides? {
    guard let name = parsed.string("--model") else { return nil }
    guard let preset = ModelPreset.named(name) else {
        throw UsageError(
            "baton \(parsed.command): --model \(name) is not a preset; choose one of "
                + ModelPreset.all.map(\.name).joined(separator: ", "))
    }
    return try .model(preset.config)
}

/// The values the flags of `entries` give on the command line.
func settingFlags(_ parsed: ParsedArguments, _ entries: [SettingEntry]) throws -> TrainingConfig.Overrides {
    var overrides = TrainingConfig.Overrides()
    for entry in entries {
        if let text = parsed.string(entry.flag) { try overrides.set(entry, text: text) }
    }
    return overrides
}

/// The model shape the flags give over `model`.
func applyModelFlags(_ parsed: ParsedArguments, to model: inout GPTConfig) throws {
    var overrides = try settingFlags(parsed, modelSettings)
    if let preset = try presetOverrides(parsed) { overrides = preset.overridden(by: overrides) }
    var config = TrainingConfig()
    config.model = model
    model = try config.applying(overrides).model
}

/// What eval and sample take as their one argument.
let modelPathHelp = "PATH: a run folder (its newest good checkpoint), a checkpoint folder, or a model.safetensors"

func modelPath(_ parsed: ParsedArguments) throws -> String { try parsed.onlyArgument(modelPathHelp) }

/// Opens the requested device. With `announce`, prints a "device:" line on stdout (with the reason
/// when auto chose); sample passes false so its stdout is only the generated text.
func openDevice(_ arguments: ParsedArguments, announce: Bool = true) throws -> Device {
    let name = arguments.string("--device") ?? "auto"
    guard let request = DeviceRequest(rawValue: name) else {
        throw UsageError("baton \(arguments.command): --device expects cpu, cuda or auto, got '\(name)'")
    }
    let threads = try threadCount(arguments) ?? 0
    let attentionName = arguments.string("--attention")
    guard let attention = AttentionKernel(rawValue: attentionName ?? "flash") else {
        throw UsageError(
            "baton \(arguments.command): --attention expects flash or materialized, got '\(attentionName!)'")
    }
    var reason: String?
    // One GPU per rank: the launcher's local rank on this node picks it.
    let device = try DeviceSelection.open(
        request, threads: threads, gpu: launcherLocalRank, attention: attention, log: { reason = $0 })
    if attentionName != nil && attention == .flash && !device.hasFlashAttention {
        throw UsageError(
            "baton \(arguments.command): --attention flash: the \(device.kind.rawValue) device has no flash "
                + "attention (it keeps the scores)"
        )
    }
    if announce { say("device: \(device.summary)" + (reason.map { " (\($0))" } ?? "")) }
    return device
}

/// --threads, checked (0 means one per core).
func threadCount(_ arguments: ParsedArguments) throws -> Int? {
    guard let threads = try arguments.int("--threads") else { return nil }
    guard threads >= 0 else { throw UsageError("baton \(arguments.command): --threads must not be negative") }
    guard threads <= 4096 else {
        throw UsageError("baton \(arguments.command): --threads \(threads) is larger than Baton supports (4096)")
    }
    return threads
}

/// This process's rank on its node, from the launcher (OpenMPI, or MPICH's PMI); 0 without one.
var launcherLocalRank: Int {
    let environment = ProcessInfo.processInfo.environment
    return (environment["OMPI_COMM_WORLD_LOCAL_RANK"] ?? environment["MPI_LOCALRANKID"]).flatMap(Int.init) ?? 0
}

/// One progress line on stdout, flushed at once so logs show progress when piped.
func say(_ line: String) {
    print(line)
    fflush(nil)
}
