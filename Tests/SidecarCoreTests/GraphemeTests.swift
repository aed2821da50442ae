import Testing
@testable import SidecarCore

/// Regressions from the `path` fuzz target: Swift's `String` operations compare grapheme clusters, so a combining
/// mark (U+0301) or a prepended concatenation mark (U+06DD) could fuse with `/` or `?` and hide it from a route match.
@Suite("Paths compare bytes, not grapheme clusters")
struct GraphemeTests {
    @Test(arguments: ["/admin/\u{301}x", "/\u{6DD}?q", "/admin/\u{301}/../../../public", "/\u{301}", "/docs/\u{E9}"])
    func rawNonASCIIPathsAreRefused(_ target: String) {
        // Raw non-ASCII is not a valid request-target byte; the client must percent-encode it.
        #expect(PathNormalizer.normalize(target: target) == nil)
    }

    @Test func queryIsSplitAtTheFirstQuestionMarkByte() throws {
        let (path, query) = try #require(PathNormalizer.normalize(target: "/a?\u{301}b"))
        #expect(path == "/a")
        #expect(query.map(String.init) == "\u{301}b")
    }

    @Test func prefixMatchIsByteExact() {
        #expect(PathMatch.prefix("/admin").matches("/admin/\u{301}x"))
        #expect(!PathMatch.prefix("/admin").matches("/admin\u{301}"))
        #expect(PathMatch.exact("/caf\u{E9}").matches("/caf\u{E9}"))
        #expect(!PathMatch.exact("/caf\u{E9}").matches("/cafe\u{301}"))   // canonically equal, different bytes
    }

    @Test func encodedCombiningMarksStayEncoded() throws {
        let (path, _) = try #require(PathNormalizer.normalize(target: "/admin/%CC%81x"))
        #expect(path == "/admin/%CC%81x")
        #expect(PathMatch.prefix("/admin").matches(path))
    }
}
