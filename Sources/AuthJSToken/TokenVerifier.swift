#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tunables of verification. Defaults follow Auth.js (15 s clock tolerance) plus caps Auth.js lacks.
public struct VerifierOptions: Sendable, Equatable {
    /// Seconds of clock skew allowed on `exp` and `nbf` (Auth.js: 15).
    public var clockTolerance: Double
    /// Whole compact token, in bytes.
    public var maxTokenBytes: Int
    /// Base64url protected header, in bytes.
    public var maxHeaderBytes: Int
    /// Caps on the decoded payload JSON.
    public var payloadLimits: JSONLimits

    public init(clockTolerance: Double = 15, maxTokenBytes: Int = 256 * 1024, maxHeaderBytes: Int = 8 * 1024,
                payloadLimits: JSONLimits = JSONLimits()) {
        self.clockTolerance = clockTolerance
        self.maxTokenBytes = maxTokenBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.payloadLimits = payloadLimits
    }
}

/// Verifies Auth.js v5 JWEs, NextAuth v4 JWEs and HS256/384/512 JWSs against a ``KeyRing`` derived once.
///
/// Pure: no I/O, no clock (`now` is a parameter), no shared mutable state, so one instance serves every event loop.
/// Verification returns a value; it never throws and never traps on hostile input.
public struct TokenVerifier: Sendable {
    public let keys: KeyRing
    public let options: VerifierOptions

    public init(keys: KeyRing, options: VerifierOptions = VerifierOptions()) {
        self.keys = keys
        self.options = options
    }

    public func verify(_ token: String, scope: KeyScope? = nil, now: Double) -> Result<VerifiedToken, VerificationFailure> {
        var token = token
        return token.withUTF8 { verify(bytes: $0, scope: scope ?? keys.everything, now: now) }
    }

    public func verify(_ token: [UInt8], scope: KeyScope? = nil, now: Double) -> Result<VerifiedToken, VerificationFailure> {
        token.withUnsafeBufferPointer { verify(bytes: $0, scope: scope ?? keys.everything, now: now) }
    }

    public func verify(bytes: UnsafeBufferPointer<UInt8>, scope: KeyScope, now: Double) -> Result<VerifiedToken, VerificationFailure> {
        if bytes.isEmpty { return .failure(.init(.malformed, "empty token")) }
        if bytes.count > options.maxTokenBytes {
            return .failure(.init(.tooLarge, "token is \(bytes.count) bytes, over the \(options.maxTokenBytes)-byte cap"))
        }
        var dots = DotPositions()
        var dotCount = 0
        // libc's memchr from dot to dot (a byte loop here cost ~5 instructions per byte of a ~600-byte token).
        let base = bytes.baseAddress!
        var from = 0
        while from < bytes.count, let hit = memchr(base + from, Int32(UInt8(ascii: ".")), bytes.count - from) {
            if dotCount == 4 { return .failure(.init(.malformed, "more than 5 dot-separated segments")) }
            let at = UnsafeRawPointer(base).distance(to: UnsafeRawPointer(hit))
            dots[dotCount] = at
            dotCount += 1
            from = at + 1
        }
        guard dotCount == 2 || dotCount == 4 else {
            return .failure(.init(.malformed, "\(dotCount + 1) segments; a compact JWS has 3 and a JWE 5"))
        }
        let headerSegment = UnsafeBufferPointer(rebasing: bytes[0..<dots[0]])
        if headerSegment.count > options.maxHeaderBytes {
            return .failure(.init(.tooLarge, "protected header is \(headerSegment.count) bytes, over the \(options.maxHeaderBytes)-byte cap"))
        }
        let header: JSONObject
        let known = keys.knownHeaders.entry(for: headerSegment)
        if let known {
            header = known.header
        } else {
            guard let headerBytes = Base64URL.decode(headerSegment) else {
                return .failure(.init(.malformed, "protected header is not base64url"))
            }
            switch JSONParser.parseObject(headerBytes, limits: JSONLimits(maxBytes: options.maxHeaderBytes, maxDepth: options.payloadLimits.maxDepth), what: "protected header") {
            case .success(let h): header = h
            case .failure(let f): return .failure(f)
            }
        }
        guard case .string(let alg)? = header["alg"] else {
            return .failure(.init(.malformed, "protected header has no string \"alg\""))
        }
        let isJWE = dotCount == 4
        let result: Result<(payload: [UInt8], format: TokenFormat, secretIndex: Int, salt: String?), VerificationFailure>
        if isJWE {
            guard alg == "dir" else { return .failure(.init(.unsupportedAlgorithm, "JWE alg \(Self.printable(alg)) is not accepted; only \"dir\" is")) }
            // A known header has none of the refused parameters (nor claim replicas): alg, enc, kid, typ only.
            if known == nil, let f = Self.refuseHeaderParameters(header) { return .failure(f) }
            result = decryptJWE(bytes, dots: dots, header: header, kidKey: known?.kidKey, scope: scope)
        } else {
            let hash: Crypto.Hash
            switch alg {
            case "HS256": hash = .sha256
            case "HS384": hash = .sha384
            case "HS512": hash = .sha512
            default: return .failure(.init(.unsupportedAlgorithm, "JWS alg \(Self.printable(alg)) is not accepted; only HS256, HS384 and HS512 are"))
            }
            if known == nil, let f = Self.refuseHeaderParameters(header) { return .failure(f) }
            result = verifyJWS(bytes, dots: dots, hash: hash, scope: scope)
        }
        switch result {
        case .failure(let f): return .failure(f)
        case .success(let opened):
            let claims: JSONObject
            switch JSONParser.parseObject(opened.payload, limits: options.payloadLimits, what: "payload") {
            case .success(let c): claims = c
            case .failure(let f): return .failure(f)
            }
            let registered = RegisteredClaims.read(claims)
            if let f = checkClaims(claims, registered, replicasIn: known == nil ? header : nil, now: now) { return .failure(f) }
            return .success(VerifiedToken(claims: claims, registered: registered.claims, payload: opened.payload,
                                          format: opened.format, secretIndex: opened.secretIndex, salt: opened.salt))
        }
    }

    /// `zip`, `crit` and `b64` change how a token must be read; none is produced by Auth.js, so none is interpreted.
    static let refusedHeaderParameters = ["zip", "crit", "b64"]

    static func refuseHeaderParameters(_ header: JSONObject) -> VerificationFailure? {
        for name in refusedHeaderParameters where header[name] != nil {
            return VerificationFailure(.unsupportedHeader, "protected header parameter \"\(name)\" is not supported")
        }
        return nil
    }

    /// `kidKey`: the key a known header's `kid` selects, found with the header.
    private func decryptJWE(_ bytes: UnsafeBufferPointer<UInt8>, dots: DotPositions, header: JSONObject, kidKey: ContentKey?, scope: KeyScope)
        -> Result<(payload: [UInt8], format: TokenFormat, secretIndex: Int, salt: String?), VerificationFailure> {
        let encryption: ContentEncryption
        switch header["enc"] {
        case .string("A256CBC-HS512")?:
            guard scope.v5Salts != 0 else { return .failure(.init(.unsupportedAlgorithm, "enc A256CBC-HS512 is Auth.js v5 only, not accepted here")) }
            encryption = .a256cbcHS512
        case .string("A256GCM")?:
            guard scope.v5Salts != 0 || scope.v4 else { return .failure(.init(.unsupportedAlgorithm, "JWE is not accepted here (JWS only)")) }
            encryption = .a256gcm
        case .string(let other)?:
            return .failure(.init(.unsupportedAlgorithm, "enc \(Self.printable(other)) is not accepted; only A256CBC-HS512 and A256GCM are"))
        default:
            return .failure(.init(.malformed, "protected header has no string \"enc\""))
        }
        if dots[1] != dots[0] + 1 {
            return .failure(.init(.malformed, "encrypted-key segment must be empty with alg dir"))
        }
        let ivSegment = UnsafeBufferPointer(rebasing: bytes[(dots[1] + 1)..<dots[2]])
        let ciphertextSegment = UnsafeBufferPointer(rebasing: bytes[(dots[2] + 1)..<dots[3]])
        let tagSegment = UnsafeBufferPointer(rebasing: bytes[(dots[3] + 1)..<bytes.count])
        guard let ivCount = Base64URL.decodedCount(ivSegment.count), let ciphertextCount = Base64URL.decodedCount(ciphertextSegment.count),
              let tagCount = Base64URL.decodedCount(tagSegment.count)
        else { return .failure(.init(.malformed, "IV, ciphertext or tag is not base64url")) }
        // The three decoded into one temporary buffer (on the stack for a session-sized token): three arrays here
        // were three allocations per token, each with a run-time metadata lookup.
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(ivCount + ciphertextCount + tagCount, 1)) { scratch in
            let ivOut = UnsafeMutableBufferPointer(rebasing: scratch[0..<ivCount])
            let ciphertextOut = UnsafeMutableBufferPointer(rebasing: scratch[ivCount..<(ivCount + ciphertextCount)])
            let tagOut = UnsafeMutableBufferPointer(rebasing: scratch[(ivCount + ciphertextCount)..<(ivCount + ciphertextCount + tagCount)])
            guard Base64URL.decode(ivSegment, into: ivOut), Base64URL.decode(ciphertextSegment, into: ciphertextOut),
                  Base64URL.decode(tagSegment, into: tagOut)
            else { return .failure(.init(.malformed, "IV, ciphertext or tag is not base64url")) }
            return decryptJWE(aad: UnsafeBufferPointer(rebasing: bytes[0..<dots[0]]), iv: UnsafeBufferPointer(ivOut),
                              ciphertext: UnsafeBufferPointer(ciphertextOut), tag: UnsafeBufferPointer(tagOut),
                              encryption: encryption, header: header, kidKey: kidKey, scope: scope)
        }
    }

    private func decryptJWE(aad: UnsafeBufferPointer<UInt8>, iv: UnsafeBufferPointer<UInt8>, ciphertext: UnsafeBufferPointer<UInt8>,
                            tag: UnsafeBufferPointer<UInt8>, encryption: ContentEncryption, header: JSONObject, kidKey: ContentKey?,
                            scope: KeyScope)
        -> Result<(payload: [UInt8], format: TokenFormat, secretIndex: Int, salt: String?), VerificationFailure> {
        let (ivLength, tagLength) = encryption == .a256cbcHS512 ? (16, 32) : (12, 16)
        guard iv.count == ivLength else { return .failure(.init(.malformed, "IV is \(iv.count) bytes; \(ivLength) expected")) }
        guard tag.count == tagLength else { return .failure(.init(.decryptionFailed, "tag is \(tag.count) bytes; \(tagLength) expected")) }
        if encryption == .a256cbcHS512, ciphertext.isEmpty || ciphertext.count % 16 != 0 {
            return .failure(.init(.malformed, "CBC ciphertext length \(ciphertext.count) is not a positive multiple of 16"))
        }
        if let kidValue = header["kid"] {
            guard case .string(let kid) = kidValue else { return .failure(.init(.malformed, "\"kid\" is not a string")) }
            guard let key = kidKey ?? keys.kidIndex[kid], key.encryption == encryption, inScope(key, scope) else {
                return .failure(.init(.noMatchingKey, "kid matches no configured key for this token source (\(keys.secretCount) secret(s), \(scopeDescription(scope)))"))
            }
            guard let plain = open(key, aad: aad, iv: iv, ciphertext: ciphertext, tag: tag) else {
                return .failure(.init(.decryptionFailed, "authentication tag did not verify under the key its kid selects"))
            }
            return .success((plain, key.format, key.secretIndex, key.saltIndex.map { keys.v5Salts[$0] }))
        }
        var tried = 0
        for key in candidates(encryption, scope) {
            tried += 1
            if let plain = open(key, aad: aad, iv: iv, ciphertext: ciphertext, tag: tag) {
                return .success((plain, key.format, key.secretIndex, key.saltIndex.map { keys.v5Salts[$0] }))
            }
        }
        return .failure(.init(.decryptionFailed, "authentication tag did not verify under any of \(tried) candidate key(s) (\(scopeDescription(scope)))"))
    }

    private func inScope(_ key: ContentKey, _ scope: KeyScope) -> Bool {
        if let si = key.saltIndex { return scope.v5Salts & (1 << UInt64(si)) != 0 }
        return key.format == .nextauthV4 && scope.v4
    }

    private func candidates(_ encryption: ContentEncryption, _ scope: KeyScope) -> [ContentKey] {
        var out: [ContentKey] = []
        let table = encryption == .a256cbcHS512 ? keys.v5CBC : keys.v5GCM
        for (si, row) in table.enumerated() where scope.v5Salts & (1 << UInt64(si)) != 0 { out.append(contentsOf: row) }
        if encryption == .a256gcm, scope.v4 { out.append(contentsOf: keys.v4GCM) }
        return out
    }

    private func scopeDescription(_ scope: KeyScope) -> String {
        var parts: [String] = []
        let salts = keys.v5Salts.enumerated().filter { scope.v5Salts & (1 << UInt64($0.offset)) != 0 }.map { "\"\($0.element)\"" }
        if !salts.isEmpty { parts.append("v5 salt(s) " + salts.joined(separator: ", ")) }
        if scope.v4 && !keys.v4GCM.isEmpty { parts.append("v4") }
        return parts.isEmpty ? "no JWE keys" : parts.joined(separator: " + ")
    }

    /// Checks the tag first, then decrypts: no plaintext exists before authentication succeeds.
    private func open(_ key: ContentKey, aad: UnsafeBufferPointer<UInt8>, iv: UnsafeBufferPointer<UInt8>, ciphertext: UnsafeBufferPointer<UInt8>,
                      tag: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        switch key.encryption {
        case .a256cbcHS512:
            guard let macKey = key.macKey else { return nil }
            return ContentCipher.openCBCHS512(macKey: macKey, encKey: key.encKey, aad: aad, iv: iv, ciphertext: ciphertext, tag: tag)
        case .a256gcm:
            return Crypto.aesGCMDecrypt(key: key.bytes, iv: iv, aad: aad, ciphertext, tag: tag)
        }
    }

    private func verifyJWS(_ bytes: UnsafeBufferPointer<UInt8>, dots: DotPositions, hash: Crypto.Hash, scope: KeyScope)
        -> Result<(payload: [UInt8], format: TokenFormat, secretIndex: Int, salt: String?), VerificationFailure> {
        guard scope.jws, !keys.hmacKeys.isEmpty else {
            return .failure(.init(.unsupportedAlgorithm, "JWS is not accepted here (JWE only)"))
        }
        let signatureSegment = UnsafeBufferPointer(rebasing: bytes[(dots[1] + 1)..<bytes.count])
        guard let signatureCount = Base64URL.decodedCount(signatureSegment.count) else {
            return .failure(.init(.malformed, "signature is not base64url"))
        }
        let signingInput = UnsafeBufferPointer(rebasing: bytes[0..<dots[1]])
        let slot = hash == .sha256 ? 0 : hash == .sha384 ? 1 : 2
        // The MAC (bytes 0–63) and the decoded signature in one temporary buffer, not two arrays.
        enum SignatureCheck { case notBase64, noMatch, matched(secretIndex: Int) }
        let check = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64 + signatureCount) { scratch -> SignatureCheck in
            let mac = UnsafeMutableBufferPointer(rebasing: scratch[0..<64])
            let signatureOut = UnsafeMutableBufferPointer(rebasing: scratch[64..<(64 + signatureCount)])
            guard Base64URL.decode(signatureSegment, into: signatureOut) else { return .notBase64 }
            for (i, prepared) in keys.hmacKeys.enumerated() {
                guard prepared[slot].mac(signingInput, into: mac) else { continue }
                if Crypto.constantTimeEqual(UnsafeBufferPointer(rebasing: mac[0..<hash.byteCount]), UnsafeBufferPointer(signatureOut)) {
                    return .matched(secretIndex: i)
                }
            }
            return .noMatch
        }
        let secretIndex: Int
        switch check {
        case .notBase64: return .failure(.init(.malformed, "signature is not base64url"))
        case .noMatch: return .failure(.init(.badSignature, "HMAC did not verify under any of \(keys.hmacKeys.count) secret(s)"))
        case .matched(let index): secretIndex = index
        }
        guard let payload = Base64URL.decode(UnsafeBufferPointer(rebasing: bytes[(dots[0] + 1)..<dots[1]])) else {
            return .failure(.init(.malformed, "payload is not base64url"))
        }
        return .success((payload, .jws, secretIndex, nil))
    }

    /// exp/nbf/iat types and times (jose semantics with `clockTolerance`), then header replicas of iss/sub/aud
    /// (`header` nil: a known header, which has none).
    func checkClaims(_ claims: JSONObject, _ registered: RegisteredClaims.Reading, replicasIn header: JSONObject?, now: Double) -> VerificationFailure? {
        if let name = registered.nonNumericTime { return .init(.invalidClaim, "\"\(name)\" claim must be a number") }
        let leeway = options.clockTolerance
        if let exp = registered.claims.expiresAt, exp <= now - leeway {
            return .init(.expired, "exp \(JSONValue.format(exp)) is not after now-\(JSONValue.format(leeway)) (now \(JSONValue.format(now)))")
        }
        if let nbf = registered.claims.notBefore, nbf > now + leeway {
            return .init(.notYetValid, "nbf \(JSONValue.format(nbf)) is after now+\(JSONValue.format(leeway)) (now \(JSONValue.format(now)))")
        }
        guard let header else { return nil }
        for name in Self.replicatedClaims {
            guard let replica = header[name] else { continue }
            // jose compares with `!==`: only equal primitives match; an array replica never does.
            let same: Bool
            switch (replica, claims[name]) {
            case (.string(let a), .string(let b)?): same = a == b
            case (.bool(let a), .bool(let b)?): same = a == b
            case (.null, .null?): same = true
            case (.integer, _), (.number, _): same = claims[name].map { $0.isNumber && $0 == replica } ?? false
            default: same = false
            }
            if !same { return .init(.invalidClaim, "protected header \"\(name)\" differs from the \"\(name)\" claim") }
        }
        return nil
    }

    /// Claims a JWE may repeat in its protected header (RFC 7519 §5.3); a replica must equal the claim.
    static let replicatedClaims = ["iss", "sub", "aud"]

    /// An attacker-chosen string, made safe and short for a reason line.
    static func printable(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars.prefix(32) {
            out += (scalar.value >= 0x20 && scalar.value < 0x7F && scalar != "\"" && scalar != "\\") ? String(scalar) : "?"
        }
        if s.unicodeScalars.count > 32 { out += "…" }
        return out + "\""
    }
}

/// Where a compact token's dots are (2 for a JWS, 4 for a JWE), held inline: an array cost an allocation per token.
struct DotPositions {
    private var first = 0, second = 0, third = 0, fourth = 0

    subscript(index: Int) -> Int {
        get {
            switch index {
            case 0: first
            case 1: second
            case 2: third
            default: fourth
            }
        }
        set {
            switch index {
            case 0: first = newValue
            case 1: second = newValue
            case 2: third = newValue
            default: fourth = newValue
            }
        }
    }
}
