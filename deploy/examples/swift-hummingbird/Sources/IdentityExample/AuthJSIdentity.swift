// Framework-independent decoding of the authjs-sidecar identity headers.
//
//   X-Auth-Sub / X-Auth-Email / X-Auth-Name / X-Auth-Picture
//       plain printable ASCII, or "utf-8''" + RFC 3986 percent-encoded UTF-8
//   X-Auth-Claims
//       base64url (no padding) of the claims JSON object
//
// Only trust these headers when the service is reachable exclusively through
// the sidecar (which strips any client-supplied X-Auth-* header).

import Foundation

/// Any JSON value, so arbitrary claims stay `Sendable` and `Codable`.
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }
}

public struct IdentityHeaderError: Error, CustomStringConvertible {
    public let description: String
}

/// The authenticated user as asserted by the sidecar.
public struct User: Sendable, Hashable, Codable {
    public var sub: String
    public var email: String?
    public var name: String?
    public var picture: String?
    public var claims: [String: JSONValue]

    public init(sub: String, email: String? = nil, name: String? = nil, picture: String? = nil, claims: [String: JSONValue] = [:]) {
        self.sub = sub
        self.email = email
        self.name = name
        self.picture = picture
        self.claims = claims
    }

    /// The `roles` (or `role`) claim: an array, or a space/comma separated string.
    public var roles: [String] {
        switch self.claims["roles"] ?? self.claims["role"] {
        case .array(let values):
            return values.compactMap(\.stringValue)
        case .string(let value):
            return value.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
        default:
            return []
        }
    }

    public func hasRole(_ role: String) -> Bool {
        self.roles.contains(role)
    }

    /// Builds the user from header values; `header` returns the raw value of a
    /// header by name. Returns nil when `X-Auth-Sub` is absent (anonymous).
    public init?(header: (String) -> String?) throws {
        guard let rawSub = header("X-Auth-Sub"), !rawSub.isEmpty else { return nil }
        let claims = try header("X-Auth-Claims").map(Self.decodeClaims) ?? [:]
        func field(_ name: String, claim: String) throws -> String? {
            if let raw = header(name) { return try Self.decodeHeaderValue(raw) }
            return claims[claim]?.stringValue
        }
        self.init(
            sub: try Self.decodeHeaderValue(rawSub),
            email: try field("X-Auth-Email", claim: "email"),
            name: try field("X-Auth-Name", claim: "name"),
            picture: try field("X-Auth-Picture", claim: "picture"),
            claims: claims
        )
    }

    /// Undo the sidecar's `utf-8''` percent-encoding; plain values pass through.
    public static func decodeHeaderValue(_ value: String) throws -> String {
        let prefix = "utf-8''"
        guard value.hasPrefix(prefix) else { return value }
        guard let decoded = value.dropFirst(prefix.count).removingPercentEncoding else {
            throw IdentityHeaderError(description: "invalid utf-8'' header value")
        }
        return decoded
    }

    /// Decode `X-Auth-Claims`: base64url without padding of a JSON object.
    public static func decodeClaims(_ value: String) throws -> [String: JSONValue] {
        var base64 = value.trimmingCharacters(in: .whitespaces)
            .replacingOccurrences(of: "-", with: "+")
            .replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64.append("=") }
        guard let data = Data(base64Encoded: base64) else {
            throw IdentityHeaderError(description: "X-Auth-Claims is not base64url")
        }
        do {
            return try JSONDecoder().decode([String: JSONValue].self, from: data)
        } catch {
            throw IdentityHeaderError(description: "X-Auth-Claims is not a JSON object")
        }
    }
}
