import ArgumentParser
import AuthJSToken
import SidecarCore
import SidecarServer

extension TokenMinter.Encryption: ExpressibleByArgument {}

struct Mint: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a session token as Auth.js encode() does (iat, exp = now + max-age, random jti), for tests and demos.")

    @Option(help: "authjs-v5, nextauth-v4 or jws.") var mode: ModeArgument = .authjsV5
    @Option(name: .customLong("secret"), help: "The secret (default: the newest of AUTH_SECRET_3..AUTH_SECRET from the environment).")
    var secret: String?
    @Option(help: "The v5 HKDF salt (default: the cookie name).") var salt: String?
    @Option(name: .customLong("cookie-name"), help: "The session cookie the token is meant for.") var cookieName: String = "authjs.session-token"
    @Option(help: "v5 content encryption: A256CBC-HS512 (current Auth.js) or A256GCM (@auth/core 0.18-0.22).") var enc: TokenMinter.Encryption = .a256cbcHS512
    @Option(help: "JWS algorithm: HS256, HS384 or HS512.") var alg: String = "HS256"
    @Option(name: .customLong("max-age"), help: "Lifetime in seconds (Auth.js default: 30 days).") var maxAge: Int64 = TokenMinter.defaultMaxAge
    @Option(help: "Issue at this Unix time instead of now.") var now: Int64?
    @Flag(name: .customLong("claims-stdin"), help: "Read the claims JSON object from standard input.") var claimsStdin = false
    @Argument(help: "The claims as a JSON object, e.g. '{\"sub\":\"42\",\"email\":\"a@b.c\"}'.") var claims: String?

    func validate() throws {
        if mode == .auto { throw ValidationError("--mode must be authjs-v5, nextauth-v4 or jws") }
        if maxAge <= 0 { throw ValidationError("--max-age must be positive") }
        if !["HS256", "HS384", "HS512"].contains(alg) { throw ValidationError("--alg must be HS256, HS384 or HS512") }
        if claimsStdin && claims != nil { throw ValidationError("give the claims as an argument or with --claims-stdin, not both") }
    }

    func run() throws {
        let secret = try resolveSecrets(self.secret.map { [$0] } ?? [])[0]
        var text = claims ?? #"{"name":"Demo User","email":"demo@example.com","picture":null,"sub":"demo-user"}"#
        if claimsStdin { text = String(decoding: DescriptorInput.readToEnd(0) ?? [], as: UTF8.self) }
        guard case .success(.object(let object)) = JSONParser.parseValue(text) else {
            throw ValidationError("the claims must be one JSON object")
        }
        let stamped = TokenMinter.stampClaims(object, now: now ?? Int64(SystemIO.wallClock()), maxAge: maxAge)
        let token: String
        do {
            switch mode {
            case .authjsV5: token = try TokenMinter.authjsV5(claims: stamped, secret: secret, salt: salt ?? cookieName, encryption: enc)
            case .nextauthV4: token = try TokenMinter.nextauthV4(claims: stamped, secret: secret)
            default: token = TokenMinter.jws(claims: stamped, secret: secret, hash: alg == "HS512" ? .sha512 : alg == "HS384" ? .sha384 : .sha256)
            }
        } catch {
            throw ValidationError(error.description)
        }
        print(token)
    }
}
