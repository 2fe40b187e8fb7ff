// What the command line goes through before ArgumentParser reads it, and the errors it words
// better: a value that starts with - (`--max-length -1`, `--prompt "-1 for this film"`) is
// attached to its option, where ArgumentParser alone would take it for a flag; any other
// argument that starts with a single - (retort's only short flag is -h) is refused with the
// `--` that fixes it (ArgumentParser read the h in "-1 for this film" as -h and exited 0); and a
// misspelt required option (`--modle`) is named as unknown, where ArgumentParser reported the
// required one missing; so is a misspelt command (`retort predcit`), where it listed "unexpected
// arguments".
import ArgumentParser
import Foundation

enum Arguments {
    /// Parses and runs `arguments` (the subcommand first), exiting as ArgumentParser's main does.
    static func run(_ arguments: [String]) {
        let command = arguments.first.flatMap { name in
            Retort.configuration.subcommands.first { $0.configuration.commandName == name }
        }
        let names = Retort.configuration.subcommands.compactMap { $0.configuration.commandName }
        // `retort predcit …`, `retort help predcit` and `retort --versoin`: named, with the nearest.
        let asked = arguments.first == "help" ? arguments.dropFirst().first : arguments.first
        if arguments.first == "help", let name = asked, ["backend-check", "perf"].contains(name) {
            failAtTop("\(name) has its own help: retort \(name) --help")
        }
        if command == nil, let name = asked, !name.hasPrefix("-"), name != "help", !names.contains(name) {
            failAtTop("unknown command \(name)\(nearest(name, in: names)); the commands are \(names.joined(separator: ", ")), backend-check and perf")
        }
        if command == nil, let option = arguments.first, option.hasPrefix("--"),   // (and ArgumentParser's own)
           !["--help", "--version", "--generate-completion-script", "--experimental-dump-help"].contains(option) {
            failAtTop("unknown option \(option)\(nearest(option, in: ["--help", "--version"])); retort itself takes --help and --version")
        }
        var arguments = arguments
        let known = command.map(options(of:))
        if let command, let known {
            arguments = attachingDashedValues(arguments, valueOptions: known.values)
            if let text = dashedText(arguments) {
                fail(command, "\"\(text)\" starts with - like a flag: put texts that start with - after -- "
                     + "(retort \(arguments[0]) … -- \"\(text)\")")
            }
        }
        var parsed: ParsableCommand
        do {
            parsed = try Retort.parseAsRoot(arguments)
        } catch {
            if !(error is CleanExit), let command, let known, let message = unknownOption(arguments, known: known.all) {
                fail(command, message)
            }
            Retort.exit(withError: error)
        }
        do { try parsed.run() } catch { Retort.exit(withError: error) }
    }

    /// Every `--name` of the command (the lines of its help's OPTIONS section, hidden ones
    /// included; prose elsewhere may name other commands' flags), and those that take a value.
    static func options(of command: ParsableCommand.Type) -> (all: Set<String>, values: Set<String>) {
        let help = Retort.helpMessage(for: command, includeHidden: true)
        let section = help.range(of: "\nOPTIONS:", options: .backwards).map { String(help[$0.upperBound...]) } ?? help
        var all: Set<String> = ["--help", "--version"], values: Set<String> = []
        for line in section.split(separator: "\n") {
            guard let match = line.firstMatch(of: /^  (?:-[a-z], )?(--[a-z0-9][a-z0-9-]*)( <)?/) else { continue }
            all.insert(String(match.output.1))
            if match.output.2 != nil { values.insert(String(match.output.1)) }
        }
        return (all, values)
    }

    /// `--name -x` as `--name=-x` where --name takes a value (nothing after `--`).
    static func attachingDashedValues(_ arguments: [String], valueOptions: Set<String>) -> [String] {
        var out: [String] = [], positionalOnly = false
        for argument in arguments {
            if !positionalOnly, let previous = out.last, valueOptions.contains(previous), argument.hasPrefix("-"), !argument.hasPrefix("--") {
                out[out.count - 1] = previous + "=" + argument
            } else {
                out.append(argument)
                positionalOnly = positionalOnly || argument == "--"
            }
        }
        return out
    }

    /// The first argument before `--` that starts with a single - other than -h: a text or a
    /// number, as retort has no other short flag.
    static func dashedText(_ arguments: [String]) -> String? {
        arguments.dropFirst().prefix { $0 != "--" }.first { $0.hasPrefix("-") && !$0.hasPrefix("--") && $0 != "-h" && $0 != "-" }
    }

    /// The first `--name` (before `--`) that the command does not have, with the nearest one's
    /// name when it is at most two edits away.
    static func unknownOption(_ arguments: [String], known: Set<String>) -> String? {
        for argument in arguments.dropFirst().prefix(while: { $0 != "--" }) where argument.hasPrefix("--") {
            let option = String(argument.prefix { $0 != "=" })
            guard !known.contains(option) else { continue }
            let suggestion = nearest(option, in: Array(known))
            if suggestion.isEmpty, let other = synonyms[option]?.first(where: known.contains) {
                return "unknown option \(option) (did you mean \(other)?)"
            }
            return "unknown option \(option)\(suggestion)"
        }
        return nil
    }

    /// Another command's name for what a command calls otherwise (eval's --data is distill's
    /// --test), suggested when no option is a near spelling.
    static let synonyms: [String: [String]] = [
        "--test": ["--data", "--input"], "--data": ["--test", "--train", "--input"], "--input": ["--data", "--test"],
        "--model": ["--teacher"], "--teacher": ["--model"], "--output": ["--out"], "--out": ["--output"],
    ]

    /// " (did you mean X?)" for the nearest of `candidates` at most two edits away, else "".
    static func nearest(_ name: String, in candidates: [String]) -> String {
        let best = candidates.min { (editDistance($0, name), $0) < (editDistance($1, name), $1) }
        return best.map { editDistance($0, name) <= 2 ? " (did you mean \($0)?)" : "" } ?? ""
    }

    /// An error about the command line before any command is chosen, in ArgumentParser's form.
    static func failAtTop(_ message: String) -> Never {
        FileHandle.standardError.write(Data("Error: \(message)\n  See 'retort --help' for more information.\n".utf8))
        exit(ExitCode.validationFailure.rawValue)
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let (a, b) = (Array(a), Array(b))
        guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var previous = row[0]
            row[0] = i
            for j in 1...b.count {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[b.count]
    }

    /// ArgumentParser's error form: the message, the command's usage, exit status 64.
    static func fail(_ command: ParsableCommand.Type, _ message: String) -> Never {
        FileHandle.standardError.write(Data("""
            Error: \(message)
            Usage: \(Retort.usageString(for: command))
              See 'retort \(command.configuration.commandName ?? "") --help' for more information.

            """.utf8))
        exit(ExitCode.validationFailure.rawValue)
    }
}
