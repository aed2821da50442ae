import Foundation
import Testing
import AuthJSToken

/// Test support shared by the test targets: the repository's fixtures and the vector-case schema.

/// Locates the repository from this file (three levels up) and loads the committed fixtures.
public enum Fixtures {
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()   // Tests/VectorFixtures
        .deletingLastPathComponent()   // Tests
        .deletingLastPathComponent()   // repo root

    public static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }

    public static func exists(_ relative: String) -> Bool { FileManager.default.fileExists(atPath: url(relative).path) }

    /// Loads a JSON fixture with the project's own parser under generous caps (the fixture files are trusted input).
    public static func load(_ relative: String) -> JSONValue? {
        guard let data = FileManager.default.contents(atPath: url(relative).path) else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        switch JSONParser.parseValue(text, limits: JSONLimits(maxBytes: 64 << 20, maxDepth: 256)) {
        case .success(let v): return v
        case .failure(let f):
            Issue.record("fixture \(relative) does not parse: \(f)")
            return nil
        }
    }

    public static let generatedPath = "fixtures/generated.json"
    public static var generatedExists: Bool { exists(generatedPath) }
}

extension JSONValue {
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var intValue: Int? {
        switch self {
        case .integer(let i): return Int(i)
        case .number(let d): return Int(exactly: d)
        default: return nil
        }
    }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var isNull: Bool { if case .null = self { return true }; return false }
}

/// One case of the shared vector schema (fixtures/vectors/*.json, fixtures/generated.json).
public struct VectorCase: Sendable, CustomTestStringConvertible {
    public struct Cookie: Sendable {
        public let name: String
        public let value: String
    }

    public let file: String
    public let id: String
    public let mode: String
    public let secrets: [String]
    public let salt: String?
    public let cookieName: String?
    public let now: Double?
    public let token: String?
    public let recipe: JSONObject?
    public let hasRequest: Bool
    public let cookieHeader: String?
    public let authorization: String?
    public let cookies: [Cookie]
    public let expect: String
    /// The stable failure code (generated.json only); nil for valid cases and for the shared vectors.
    public let expectCode: String?
    public let hasExpectCode: Bool
    public let reason: String?
    public let expectedClaims: JSONValue?

    public var testDescription: String { "\(file.split(separator: "/").last ?? ""):\(id)" }
    public var isValid: Bool { expect == "valid" }
    public var hasToken: Bool { token != nil || recipe != nil }

    public var formats: Set<TokenFormat> {
        switch mode {
        case "authjs-v5": return [.authjsV5]
        case "nextauth-v4": return [.nextauthV4]
        case "jws": return [.jws]
        default: return Set(TokenFormat.allCases)
        }
    }

    public var v5Salt: String { salt ?? cookieName ?? "authjs.session-token" }

    public init?(file: String, _ v: JSONValue) {
        guard let o = v.objectValue, let id = o["id"]?.stringValue, let mode = o["mode"]?.stringValue,
              let secrets = o["secrets"]?.arrayValue?.compactMap(\.stringValue), let expect = o["expect"]?.stringValue
        else { return nil }
        self.file = file
        self.id = id
        self.mode = mode
        self.secrets = secrets
        self.salt = o["salt"]?.stringValue
        self.cookieName = o["cookie_name"]?.stringValue
        self.now = o["now"]?.doubleValue
        self.token = o["token"]?.stringValue
        self.recipe = o["token_recipe"]?.objectValue
        if let r = o["request"]?.objectValue {
            hasRequest = true
            cookieHeader = r["cookie_header"]?.stringValue
            authorization = r["authorization"]?.stringValue
        } else {
            hasRequest = false
            cookieHeader = nil
            authorization = nil
        }
        cookies = (o["cookies"]?.arrayValue ?? []).compactMap { c in
            guard let n = c["name"]?.stringValue, let v = c["value"]?.stringValue else { return nil }
            return Cookie(name: n, value: v)
        }
        self.expect = expect
        self.hasExpectCode = o["expect_code"] != nil
        self.expectCode = o["expect_code"]?.stringValue
        self.reason = o["reason"]?.stringValue
        self.expectedClaims = o["expected_claims"].flatMap { $0.isNull ? nil : $0 }
    }

    /// The compact token: stored, or rebuilt from `token_recipe` (fixtures/README.md) and checked against its length
    /// and SHA-256.
    public func resolvedToken() -> String? {
        if let token { return token }
        guard let r = recipe, let kind = r["kind"]?.stringValue, let rest = r["rest"]?.stringValue else { return nil }
        var header: [UInt8]
        switch kind {
        case "huge_header":
            guard let bytes = r["bytes"]?.intValue, let prefix = r["header_prefix"]?.stringValue,
                  let fill = r["fill"]?.stringValue, let suffix = r["header_suffix"]?.stringValue else { return nil }
            let n = bytes - prefix.unicodeScalars.count - suffix.unicodeScalars.count
            header = Array(prefix.utf8)
            header.reserveCapacity(bytes)
            for _ in 0..<n { header.append(contentsOf: fill.utf8) }
            header.append(contentsOf: suffix.utf8)
        case "deep_header":
            guard let depth = r["depth"]?.intValue, let open = r["open"]?.stringValue, let close = r["close"]?.stringValue
            else { return nil }
            header = []
            header.reserveCapacity(depth * (open.utf8.count + close.utf8.count))
            for _ in 0..<depth { header.append(contentsOf: open.utf8) }
            for _ in 0..<depth { header.append(contentsOf: close.utf8) }
        default:
            Issue.record("unknown token_recipe kind \(kind)")
            return nil
        }
        let token = Base64URL.encode(header) + rest
        if let length = r["length"]?.intValue {
            #expect(token.utf8.count == length, "recipe \(id): length")
        }
        if let sha = r["sha256"]?.stringValue {
            #expect(Hex.encode(Crypto.digest(.sha256, Array(token.utf8))) == sha, "recipe \(id): sha256")
        }
        return token
    }

    public static func load(_ relative: String) -> [VectorCase] {
        guard let root = Fixtures.load(relative), let cases = root["cases"]?.arrayValue else { return [] }
        return cases.compactMap { v in
            let c = VectorCase(file: relative, v)
            if c == nil { Issue.record("\(relative): a case does not match the schema") }
            return c
        }
    }
}

public enum Hex {
    public static func decode(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count / 2)
        var hi: UInt8?
        for c in s.utf8 {
            let v: UInt8
            switch c {
            case 0x30...0x39: v = c - 0x30
            case 0x61...0x66: v = c - 0x61 + 10
            case 0x41...0x46: v = c - 0x41 + 10
            default: continue
            }
            if let h = hi { out.append(h << 4 | v); hi = nil } else { hi = v }
        }
        return out
    }

    public static func encode(_ b: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for x in b { out.append(digits[Int(x >> 4)]); out.append(digits[Int(x & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A small deterministic PRNG (SplitMix64) so hostile-input tests are reproducible.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public let allCodes = Set(VerificationCode.allCases.map(\.rawValue))

/// A decoded protected header, for tests that need to know whether a token carries a `kid`.
public func protectedHeader(of token: String) -> JSONObject? {
    guard let first = token.split(separator: ".", omittingEmptySubsequences: false).first,
          let bytes = Base64URL.decode(first), case .success(let o) = JSONParser.parseObject(bytes) else { return nil }
    return o
}

public func currentTime() -> Double { Date().timeIntervalSince1970 }
