import ArgumentParser
import Logging
import NIOCore
import SidecarCore
import SidecarServer

/// Flags shared by `serve` and `check-config`: `--config FILE` plus one `--<flag> VALUE` per row of `Settings.all`.
struct ConfigFlags: ParsableArguments {
    @Option(name: .customLong("config"), help: "YAML config file (also SIDECAR_CONFIG).") var configPath: String?
    @Argument(parsing: .allUnrecognized, help: .init("Any setting as --flag VALUE (see `Settings` in README.md).", valueName: "--flag VALUE"))
    var settingFlags: [String] = []

    func parsedFlags() throws -> [String: String] {
        let known = Set(Settings.all.compactMap(\.flag))
        var out: [String: String] = [:]
        var i = 0
        while i < settingFlags.count {
            let arg = settingFlags[i]
            guard arg.hasPrefix("--") else { throw ValidationError("unexpected argument '\(arg)'") }
            var name = String(arg.dropFirst(2))
            var value: String
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            } else {
                guard i + 1 < settingFlags.count else { throw ValidationError("--\(name) needs a value") }
                value = settingFlags[i + 1]
                i += 1
            }
            guard known.contains(name) else { throw ValidationError("unknown option '--\(name)'") }
            out[name] = value
            i += 1
        }
        return out
    }

    func load() throws -> Result<SidecarConfig, ConfigIssues> {
        ConfigLoader.load(environment: SystemIO.environment(), flags: try parsedFlags(),
                          configPath: configPath, coreCount: System.coreCount)
    }
}

func report(_ issues: ConfigIssues) {
    writeStderr("configuration has \(issues.issues.count) problem(s):")
    for issue in issues.issues { writeStderr("  - \(issue)") }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the sidecar (the default subcommand).")
    @OptionGroup var flags: ConfigFlags

    func run() throws {
        switch try flags.load() {
        case .failure(let issues):
            report(issues)
            throw ExitCode(78)
        case .success(let config):
            let level = Logger.Level(rawValue: config.logLevel) ?? .info
            LoggingSystem.bootstrap { label in SinkLogHandler(label: label, sink: .standardError, level: level) }
            let logger = Logger(label: "authjs-sidecar")
            try SidecarServer(config: config, logger: logger).run()
        }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-config", abstract: "Validate the configuration; print every problem and exit non-zero, or a summary and exit 0.")
    @OptionGroup var flags: ConfigFlags

    func run() throws {
        switch try flags.load() {
        case .failure(let issues):
            report(issues)
            throw ExitCode(1)
        case .success(let c):
            print("configuration OK")
            print("  listen: \(c.listen)")
            switch c.upstream {
            case .echo: print("  upstream: echo (built-in demo)")
            case .http(let a, _, let base): print("  upstream: \(a)\(base)")
            }
            print("  secrets: \(c.authenticator.verifier.keys.secretCount) (values not shown)")
            print("  cookies: \(c.authenticator.extractor.cookies.map(\.name).joined(separator: ", "))")
            print("  formats: \(c.authenticator.verifier.keys.formats.map(\.rawValue).sorted().joined(separator: ", "))")
            print("  routes: \(c.routes.rules.count) rule(s) before the default (token required)")
        }
    }
}
