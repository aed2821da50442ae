import ArgumentParser

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the sidecar (the default subcommand).")
    func run() throws { throw ValidationError("serve: not built yet") }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-config", abstract: "Validate the configuration and print every problem.")
    func run() throws { throw ValidationError("check-config: not built yet") }
}
