/// Reads the signing/encryption secrets from the environment exactly as Auth.js `setEnvDefaults` does:
/// `[AUTH_SECRET_3, AUTH_SECRET_2, AUTH_SECRET_1, AUTH_SECRET]` (the newest first), `NEXTAUTH_SECRET` as a fallback
/// when no `AUTH_SECRET*` is set.
public enum SecretsFromEnvironment {
    public static func load(_ env: [String: String]) -> Result<[String], ConfigIssue> {
        var secrets: [String] = []
        for name in ["AUTH_SECRET_3", "AUTH_SECRET_2", "AUTH_SECRET_1", "AUTH_SECRET"] {
            guard let value = env[name] else { continue }
            if value.isEmpty {
                return .failure(ConfigIssue(key: name, problem: "is set but empty", hint: "unset it or give it the secret your Auth.js app uses (`npx auth secret` makes one)"))
            }
            secrets.append(value)
        }
        if !secrets.isEmpty { return .success(secrets) }
        if let legacy = env["NEXTAUTH_SECRET"] {
            if legacy.isEmpty {
                return .failure(ConfigIssue(key: "NEXTAUTH_SECRET", problem: "is set but empty", hint: "set AUTH_SECRET (or NEXTAUTH_SECRET) to the secret your app uses"))
            }
            return .success([legacy])
        }
        return .failure(ConfigIssue(key: "AUTH_SECRET", problem: "is not set (nor NEXTAUTH_SECRET)",
                                    hint: "set AUTH_SECRET to the same secret as your Auth.js/NextAuth app; rotate with AUTH_SECRET_1..3"))
    }
}

/// One configuration problem: the key it concerns (env name, flag or file path), what is wrong, and how to fix it.
/// Never carries a secret value.
public struct ConfigIssue: Error, Sendable, Equatable, CustomStringConvertible {
    public let key: String
    public let problem: String
    public let hint: String

    public init(key: String, problem: String, hint: String) {
        self.key = key
        self.problem = problem
        self.hint = hint
    }

    public var description: String { "\(key): \(problem) — \(hint)" }
}
