/// The stable failure codes of token verification and extraction.
///
/// The raw values are a public contract: they appear in logs, in metric labels, in the `reason` of 401 bodies and on
/// the first line of `authjs-sidecar decode`'s stderr. Add codes; never rename one.
public enum VerificationCode: String, Sendable, CaseIterable, Hashable {
    /// Not a compact JWS/JWE, bad base64url, or a header/payload that is not a JSON object.
    case malformed
    /// Over a size or JSON-nesting cap.
    case tooLarge = "too_large"
    /// `alg`/`enc` not accepted for this token source (`none` in any casing included).
    case unsupportedAlgorithm = "unsupported_algorithm"
    /// A header parameter the verifier refuses to interpret: `zip`, `crit`, `b64`.
    case unsupportedHeader = "unsupported_header"
    /// A JWE whose authentication tag did not verify under any candidate key.
    case decryptionFailed = "decryption_failed"
    /// A JWS whose HMAC did not verify under any configured secret.
    case badSignature = "bad_signature"
    /// A JWE `kid` that is the thumbprint of no configured (secret, salt) key.
    case noMatchingKey = "no_matching_key"
    /// `exp <= now - leeway`.
    case expired
    /// `nbf > now + leeway`.
    case notYetValid = "not_yet_valid"
    /// A registered claim of the wrong type, or a header `iss`/`sub`/`aud` that differs from the claim.
    case invalidClaim = "invalid_claim"
    /// The request carried no session cookie and no Bearer token.
    case missingToken = "missing_token"
}

/// Why a token was refused: a stable ``code`` plus a human reason that never contains token or key material.
public struct VerificationFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: VerificationCode
    public let reason: String

    public init(_ code: VerificationCode, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    /// `code: reason`, the line `decode` prints and logs carry.
    public var description: String { "\(code.rawValue): \(reason)" }
}
