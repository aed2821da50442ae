import Foundation
import Hummingbird

/// Routes of the example service. Kept separate from `main` so tests can use it.
func buildRouter() -> Router<AppRequestContext> {
    let router = Router(context: AppRequestContext.self)
    router.add(middleware: AuthJSIdentityMiddleware())

    // Public: works with or without a user.
    router.get("healthz") { _, _ -> HTTPResponse.Status in .ok }
    router.get("hello") { _, context -> String in
        "Hello, \(context.user.map { $0.name ?? $0.sub } ?? "anonymous")!"
    }

    // Authenticated: the child context guarantees `context.user` (401 otherwise).
    let authenticated = router.group(context: AuthenticatedRequestContext.self)
    authenticated.get("me") { _, context -> User in
        context.user
    }
    authenticated.get("admin") { _, context -> String in
        guard context.user.hasRole("admin") else {
            throw HTTPError(.forbidden, message: "role 'admin' required")
        }
        return "Welcome, administrator \(context.user.sub)"
    }
    return router
}

func buildApplication(host: String, port: Int) -> some ApplicationProtocol {
    Application(
        router: buildRouter(),
        configuration: .init(address: .hostname(host, port: port), serverName: "identity-example")
    )
}

@main
struct IdentityExampleApp {
    static func main() async throws {
        let env = ProcessInfo.processInfo.environment
        // Bind to loopback by default: the identity headers are only trustworthy
        // when nothing but the sidecar can reach this port.
        let host = env["HOST"] ?? "127.0.0.1"
        let port = env["PORT"].flatMap(Int.init) ?? 8000
        try await buildApplication(host: host, port: port).runService()
    }
}
