import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import IdentityExample

private func base64url(_ json: String) -> String {
    Data(json.utf8).base64EncodedString()
        .replacingOccurrences(of: "+", with: "-")
        .replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

private extension HTTPField.Name {
    static let xAuthSub = Self("X-Auth-Sub")!
    static let xAuthName = Self("X-Auth-Name")!
    static let xAuthClaims = Self("X-Auth-Claims")!
}

struct IdentityTests {
    func makeApp() -> some ApplicationProtocol {
        Application(router: buildRouter())
    }

    @Test func meRequiresIdentity() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/me", method: .get) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }

    @Test func meDecodesHeaders() async throws {
        let headers: HTTPFields = [
            .xAuthSub: "user-1",
            .xAuthName: "utf-8''Zo%C3%AB",
            .xAuthClaims: base64url(#"{"sub":"user-1","email":"zoe@example.com","roles":["admin"]}"#),
        ]
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/me", method: .get, headers: headers) { response in
                #expect(response.status == .ok)
                let user = try JSONDecoder().decode(User.self, from: Data(String(buffer: response.body).utf8))
                #expect(user.sub == "user-1")
                #expect(user.name == "Zoë")
                #expect(user.email == "zoe@example.com")
                #expect(user.roles == ["admin"])
            }
        }
    }

    @Test func adminNeedsRole() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/admin", method: .get, headers: [.xAuthSub: "u2"]) { response in
                #expect(response.status == .forbidden)
            }
        }
    }

    @Test func helloIsOptional() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/hello", method: .get) { response in
                #expect(String(buffer: response.body) == "Hello, anonymous!")
            }
        }
    }
}
