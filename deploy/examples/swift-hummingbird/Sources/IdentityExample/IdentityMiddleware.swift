// Hummingbird 2 glue: a request context carrying the optional `User`, a
// middleware filling it from the sidecar headers, and a child context that
// guarantees an authenticated user (401 otherwise).

import HTTPTypes
import Hummingbird

/// A request context that can carry the identity asserted by the sidecar.
public protocol IdentityRequestContext: RequestContext {
    var user: User? { get set }
}

/// The application's request context: `user` is nil for anonymous requests
/// (routes the sidecar treats as `public` or `optional`).
public struct AppRequestContext: IdentityRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var user: User?

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.user = nil
    }
}

/// Context for routes that require a user: creating it fails with 401 when the
/// sidecar did not authenticate the request.
public struct AuthenticatedRequestContext: ChildRequestContext {
    public typealias ParentContext = AppRequestContext

    public var coreContext: CoreRequestContextStorage
    public let user: User

    public init(context: AppRequestContext) throws {
        guard let user = context.user else {
            throw HTTPError(
                .unauthorized,
                headers: [.wwwAuthenticate: "Bearer realm=\"authjs-sidecar\""],
                message: "not authenticated"
            )
        }
        // Copy the parent's core context so route parameters and logger survive.
        self.coreContext = context.coreContext
        self.user = user
    }
}

/// Reads X-Auth-* headers into `context.user`.
public struct AuthJSIdentityMiddleware<Context: IdentityRequestContext>: RouterMiddleware {
    public init() {}

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        var context = context
        do {
            context.user = try User(header: { name in
                HTTPField.Name(name).flatMap { request.headers[$0] }
            })
        } catch {
            context.logger.warning("rejecting malformed identity headers: \(error)")
            throw HTTPError(.unauthorized, message: "invalid identity headers")
        }
        if let user = context.user {
            context.logger[metadataKey: "user"] = .string(user.sub)
        }
        return try await next(request, context)
    }
}

extension User: ResponseEncodable {}
