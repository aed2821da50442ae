import ArgumentParser
import AuthJSToken
import SidecarCore
import SidecarServer

enum ModeArgument: String, ExpressibleByArgument, CaseIterable {
    case authjsV5 = "authjs-v5", nextauthV4 = "nextauth-v4", jws, auto

    var formats: Set<TokenFormat> {
        switch self {
        case .authjsV5: return [.authjsV5]
        case .nextauthV4: return [.nextauthV4]
        case .jws: return [.jws]
        case .auto: return Set(TokenFormat.allCases)
        }
    }
}

/// Secrets from `--secret` flags (first = newest), else from the environment as Auth.js reads it.
func resolveSecrets(_ flags: [String]) throws -> [String] {
    if !flags.isEmpty {
        if flags.contains("") { throw ValidationError("--secret must not be empty") }
        return flags
    }
    switch SecretsFromEnvironment.load(SystemIO.environment()) {
    case .success(let s): return s
    case .failure(let issue): throw ValidationError("no --secret given and \(issue)")
    }
}

struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify one token (or a request's Cookie/Authorization headers) and print its claims.",
        discussion: """
        Exit 0 with the claims as one JSON object on stdout; exit 1 with `code: reason` on stderr when the token is \
        invalid; exit 2 on a usage error.
        """)

    @Option(help: "authjs-v5, nextauth-v4, jws or auto.") var mode: ModeArgument = .auto
    @Option(name: .customLong("secret"), help: "A secret; repeat for rotation, newest first. Default: AUTH_SECRET etc. from the environment.")
    var secrets: [String] = []
    @Option(help: "The v5 HKDF salt (default: the cookie name).") var salt: String?
    @Option(name: .customLong("cookie-name"), help: "The session cookie to read from --cookie-header (its .N chunks too).") var cookieName: String?
    @Option(help: "Evaluate exp/nbf at this Unix time instead of now.") var now: Double?
    @Option(name: .customLong("clock-tolerance"), help: "Seconds of leeway on exp/nbf.") var clockTolerance: Double = 15
    @Flag(name: .customLong("token-stdin"), help: "Read the token from standard input.") var tokenStdin = false
    @Option(name: .customLong("cookie-header"), help: "A raw Cookie header value.") var cookieHeader: String?
    @Option(help: "A raw Authorization header value (used only when no session cookie is present).") var authorization: String?
    @Argument(help: "The compact token.") var token: String?

    func validate() throws {
        let sources = [tokenStdin, token != nil, cookieHeader != nil || authorization != nil].filter { $0 }.count
        if sources == 0 { throw ValidationError("give a TOKEN, --token-stdin, or --cookie-header/--authorization") }
        if sources > 1 { throw ValidationError("give only one of TOKEN, --token-stdin, or --cookie-header/--authorization") }
        if !(clockTolerance >= 0 && clockTolerance < 1e9) { throw ValidationError("--clock-tolerance must be a number of seconds >= 0") }
        if let now, !now.isFinite { throw ValidationError("--now must be a Unix time in seconds") }
        if let salt, salt.utf8.count > 990 { throw ValidationError("--salt is too long (Auth.js's HKDF refuses info over 1024 bytes)") }
    }

    func run() throws {
        let secrets = try resolveSecrets(self.secrets)
        let cookies: [SessionCookie]
        if cookieName == nil, salt == nil, mode == .auto {
            cookies = SessionCookie.defaults
        } else {
            let name = cookieName ?? (mode == .nextauthV4 ? "next-auth.session-token" : "authjs.session-token")
            cookies = [SessionCookie(name: name, salt: salt ?? name, acceptsV4: mode == .nextauthV4 || mode == .auto)]
        }
        let authenticator: TokenAuthenticator
        do {
            authenticator = try TokenAuthenticator(secrets: secrets, cookies: cookies, formats: mode.formats,
                                                   options: VerifierOptions(clockTolerance: clockTolerance))
        } catch {
            throw ValidationError(error.description)
        }
        let now = self.now ?? SystemIO.wallClock()
        let result: Result<VerifiedToken, VerificationFailure>
        if tokenStdin || token != nil {
            var text = token ?? ""
            if tokenStdin {
                let data = DescriptorInput.readToEnd(0) ?? []
                text = String(decoding: data, as: UTF8.self)
            }
            let trimmed = text.trimmingSpaces
            result = authenticator.verifier.verify(trimmed, now: now)
        } else {
            result = authenticator.authenticate(cookieHeader: cookieHeader, authorization: authorization, now: now)
        }
        switch result {
        case .success(let verified):
            print(JSONValue.object(verified.claims).description)
        case .failure(let failure):
            writeStderr(failure.description)
            throw ExitCode(1)
        }
    }
}
