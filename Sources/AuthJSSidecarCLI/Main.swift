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
            SystemIO.writeAll(AuthJSSidecar.fullMessage(for: error) + "\n", fd: 2)
            exit(code == .failure ? 1 : 2)
        }
    }
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
