#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import SidecarServer

/// What is removed at a Unix listen path before binding: a socket nobody listens on, nothing else.
@Suite("Stale Unix socket removal")
struct StaleSocketTests {
    /// A Unix socket bound at `path`; listening or not, and closed (left stale) when `closeAfter`.
    static func bound(_ path: String, listening: Bool) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        if listening { _ = listen(fd, 4) }
        return fd
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    @Test func removesAStaleSocketOnly() throws {
        let dir = "/tmp/sidecar-stale-\(getpid())"
        mkdir(dir, 0o700)
        defer { rmdir(dir) }

        let stale = dir + "/stale.sock"
        close(Self.bound(stale, listening: false))
        #expect(Self.exists(stale))
        SystemIO.removeStaleSocket(stale)
        #expect(!Self.exists(stale), "a socket nobody listens on is removed")

        let live = dir + "/live.sock"
        let fd = Self.bound(live, listening: true)
        SystemIO.removeStaleSocket(live)
        #expect(Self.exists(live), "another process's live socket is left alone")
        close(fd)
        unlink(live)

        let file = dir + "/file"
        let f = open(file, O_CREAT | O_WRONLY, 0o600)
        close(f)
        SystemIO.removeStaleSocket(file)
        #expect(Self.exists(file), "a regular file is never removed")
        unlink(file)

        SystemIO.removeStaleSocket(dir + "/missing")  // nothing there: nothing happens
    }
}
