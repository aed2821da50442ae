import AuthJSToken

/// What a route demands of a request.
public enum AuthMode: String, Sendable, CaseIterable {
    /// A valid token is needed (401 otherwise).
    case required
    /// A valid token's claims are injected; a missing or invalid one is not an error.
    case optional
    /// No token needed; a valid one's claims are still injected.
    case `public`
}

/// How a rule's path is compared with the normalised request path.
public enum PathMatch: Sendable, Equatable {
    /// `/docs` covers `/docs` and `/docs/…`, never `/docsx`.
    case prefix(String)
    case exact(String)
    /// `*` matches within one segment, `**` across segments.
    case glob(String)

    /// Compares UTF-8 bytes, never Characters (grapheme clustering would let a combining mark hide a `/`).
    public func matches(_ path: String) -> Bool {
        switch self {
        case .exact(let p): return path.utf8.elementsEqual(p.utf8)
        case .prefix(let p):
            // No allocation: this runs for every request and every rule.
            let rule = p.utf8
            let baseCount = rule.last == UInt8(ascii: "/") ? rule.count - 1 : rule.count
            if baseCount == 0 { return true }
            let bytes = path.utf8
            guard bytes.count >= baseCount, bytes.prefix(baseCount).elementsEqual(rule.prefix(baseCount)) else { return false }
            return bytes.count == baseCount || bytes.dropFirst(baseCount).first == UInt8(ascii: "/")
        case .glob(let g): return PathMatch.glob(g, path)
        }
    }

    /// `pattern` matches all of `path`: `*` stands for any run of bytes without `/`, `**` (or a longer run of stars)
    /// for any run of bytes. Simulates the pattern as an automaton over the path — time O(path × pattern), never
    /// exponential: a backtracking matcher with a few stars in a rule is stalled by a long request path (the config
    /// fuzz target found `/a**…**` taking minutes on `/admin/users/1`; with `/**/x/**/y/**` an 8 KB path would do it).
    public static func glob(_ pattern: String, _ path: String) -> Bool {
        enum Token { case byte(UInt8), star, anything }
        var tokens: [Token] = []
        var stars = 0
        for b in pattern.utf8 {
            if b == UInt8(ascii: "*") { stars += 1; continue }
            if stars > 0 { tokens.append(stars == 1 ? .star : .anything); stars = 0 }
            tokens.append(.byte(b))
        }
        if stars > 0 { tokens.append(stars == 1 ? .star : .anything) }

        let m = tokens.count
        // `live[j]`: the path read so far can leave the pattern at token j. A star may match nothing, so a live star
        // makes the token after it live too (increasing j carries that through runs of stars).
        var live = [Bool](repeating: false, count: m + 1)
        var next = live
        func close(_ states: inout [Bool]) {
            for j in 0..<m where states[j] {
                if case .byte = tokens[j] { continue }
                states[j + 1] = true
            }
        }
        live[0] = true
        close(&live)
        for b in path.utf8 {
            for j in 0...m { next[j] = false }
            var any = false
            for j in 0..<m where live[j] {
                switch tokens[j] {
                case .byte(let c): if c == b { next[j + 1] = true; any = true }
                case .star: if b != UInt8(ascii: "/") { next[j] = true; any = true }
                case .anything: next[j] = true; any = true
                }
            }
            if !any { return false }
            close(&next)
            swap(&live, &next)
        }
        return live[m]
    }
}

/// A claim condition; unmet conditions give 403.
public enum ClaimRequirement: Sendable, Equatable, CustomStringConvertible {
    /// The claim (a dotted path) is an array containing the value, or a string equal to it.
    case contains(path: String, value: JSONValue)
    /// The claim equals the value.
    case equals(path: String, value: JSONValue)
    /// The claim is present and not null.
    case present(path: String)

    public func isMet(by claims: JSONObject) -> Bool {
        switch self {
        case .present(let path): return ClaimPath.lookup(path, in: claims).map { $0 != .null } ?? false
        case .equals(let path, let value): return ClaimPath.lookup(path, in: claims) == value
        case .contains(let path, let value):
            switch ClaimPath.lookup(path, in: claims) {
            case .array(let items)?: return items.contains(value)
            case .string(let s)?:
                // Space-separated scope strings (`scope: "read admin"`) are common; comma-separated role strings too.
                guard case .string(let v) = value else { return false }
                // Bytes, not `==` (canonical equivalence; see `JSONValue.sameText`); split on ASCII space and comma,
                // as the bundled upstream helpers split a roles string.
                return JSONValue.sameText(s, v)
                    || s.utf8.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: ",") }).contains { $0.elementsEqual(v.utf8) }
            default: return false
            }
        }
    }

    public var description: String {
        switch self {
        case .contains(let p, let v): return "\(p) contains \(v)"
        case .equals(let p, let v): return "\(p) equals \(v)"
        case .present(let p): return "\(p) is present"
        }
    }
}

/// Dotted claim paths (`address.country`) into nested objects.
public enum ClaimPath {
    public static func lookup(_ path: String, in claims: JSONObject) -> JSONValue? {
        if let direct = claims[path] { return direct }
        var current: JSONValue = .object(claims)
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            guard case .object(let o) = current, let next = o[String(part)] else { return nil }
            current = next
        }
        return current
    }
}

/// One route: which requests it matches and what they need. A class, immutable once built: the rule a request
/// matches is handed on per request, and as a struct each hand-off copied it (a retain and release of every field).
public final class RouteRule: Sendable, Equatable, CustomStringConvertible {
    public let match: PathMatch
    /// Upper-case methods; nil = any.
    public let methods: Set<String>?
    public let mode: AuthMode
    public let requirements: [ClaimRequirement]

    public init(match: PathMatch, methods: Set<String>? = nil, mode: AuthMode, requirements: [ClaimRequirement] = []) {
        self.match = match
        self.methods = methods
        self.mode = mode
        self.requirements = requirements
    }

    public static func == (a: RouteRule, b: RouteRule) -> Bool {
        a.match == b.match && a.methods == b.methods && a.mode == b.mode && a.requirements == b.requirements
    }

    public var description: String {
        "RouteRule(match: \(match), methods: \(methods.map { $0.sorted().description } ?? "any"), mode: \(mode), requirements: \(requirements))"
    }
}

/// Ordered rules; the first that matches the method and normalised path decides. Unmatched paths need a token.
/// A rule listing `GET` matches `HEAD` too: an upstream answers `HEAD` with its `GET` handler (Starlette, most
/// frameworks), so `{methods: [GET], mode: required}` followed by a public catch-all left `HEAD` of the same path
/// public (found in review).
public struct RoutePolicy: Sendable, Equatable {
    public let rules: [RouteRule]
    public static let fallback = RouteRule(match: .prefix("/"), mode: .required)

    public init(rules: [RouteRule]) { self.rules = rules }

    public func rule(method: String, path: String) -> RouteRule {
        for rule in rules where rule.match.matches(path) {
            if let methods = rule.methods, !methods.contains(method), !(method == "HEAD" && methods.contains("GET")) { continue }
            return rule
        }
        return Self.fallback
    }
}
