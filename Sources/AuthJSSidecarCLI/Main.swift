import ArgumentParser
import SidecarServer
#if canImport(Glibc)
import Glibc
#endif

/// Entry point: argument-parser subcommands, with the exit codes the `decode` contract fixes
/// (0 valid, 1 invalid token, 2 usage) instead of argument-parser's default 64 for usage errors.
@main
struct Main {
    static func main() {
        do {
            var command = try AuthJSSidecar.parseAsRoot()
            try command.run()
        } catch let code as ExitCode {
            exit(code.rawValue)
        } catch {
            let code = AuthJSSidecar.exitCode(for: error)
            if code == .success {
                print(AuthJSSidecar.fullMessage(for: error))
                exit(0)
            }
            SystemIO.writeAll(redactingArguments(AuthJSSidecar.fullMessage(for: error)) + "\n", fd: 2)
            exit(code == .failure ? 1 : 2)
        }
    }
}

/// argument-parser quotes the argument it could not place (`unexpected argument 'AUTH_SECRET=…'`): a secret or a
/// token pasted as one would be echoed to the terminal and to logs. Quoted arguments in its first line are replaced
/// by their length (found in review). Its own usage lines (after the first) name options, never values.
func redactingArguments(_ message: String) -> String {
    var lines = message.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    guard let first = lines.first, first.lowercased().contains("unexpected argument") else { return message }
    var out = ""
    var inQuote = false
    var quoted = 0
    for character in first {
        if character == "'" {
            if inQuote { out += "<\(quoted) characters, not shown>'" } else { out.append(character) }
            inQuote.toggle()
            quoted = 0
        } else if inQuote {
            quoted += 1
        } else {
            out.append(character)
        }
    }
    if inQuote { out += "<\(quoted) characters, not shown>" }
    lines[0] = out
    return lines.joined(separator: "\n")
}

struct AuthJSSidecar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "authjs-sidecar",
        abstract: "A reverse-proxy sidecar that verifies Auth.js / NextAuth session tokens and injects identity headers.",
        subcommands: [Serve.self, Decode.self, Mint.self, CheckConfig.self],
        defaultSubcommand: Serve.self
    )
}

/// A usage error with argument-parser's formatting (exit 2 through `Main`).
struct UsageError: Error, CustomStringConvertible {
    let description: String
}

func writeStderr(_ line: String) {
    SystemIO.writeAll(line + "\n", fd: 2)
}
