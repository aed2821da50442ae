// libFuzzer entry point for every pure parser of the sidecar. `FUZZ_TARGET` selects one (read once, cached):
//
//   token-v5 token-v4 token-jws token-auto   TokenVerifier on the raw input bytes (scope: that format / everything)
//   cookie                                   TokenAuthenticator: input = cookie header [0x00 authorization]
//   headers                                  JSON object -> VerifiedToken -> IdentityHeaderMapper.headers(for:)
//   path                                     PathNormalizer.normalize(target: "/" + input)
//   config                                   ConfigLoader.load with the input as the YAML file
//   json                                     JSONParser.parseObject with default limits
//   pipeline                                 the client's raw bytes through the server's connection pipeline
//   forward                                  the same with valid sessions ("@T"): what reaches the upstream is checked
//   upstream-response                        UpstreamResponseParser, differentially against NIO's llhttp decoder
//   client-request                           ClientRequestParser, differentially against NIO's llhttp decoder
//
// Built with `-DFUZZING` (see Tests/fuzz/run.sh) libFuzzer supplies `main`. Built without it, `SidecarFuzzMain`
// replays the files (or directories of files) given as arguments through the same code and prints a summary, so a
// crash reproduces in a plain debug build too. An invariant violation prints `INVARIANT <target>: ...` and aborts.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: size == 0 ? nil : data, count: size)
    FuzzTargets.run(selectedTarget, bytes)
    return 0
}

/// The target named by `FUZZ_TARGET`, resolved on first use (Swift globals initialise lazily and exactly once).
let selectedTarget: FuzzTarget = {
    guard let raw = getenv("FUZZ_TARGET"), let target = FuzzTarget(rawValue: String(cString: raw)) else {
        let name = getenv("FUZZ_TARGET").map { String(cString: $0) } ?? "(unset)"
        printErr("SidecarFuzz: FUZZ_TARGET=\(name) is not one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: " "))\n")
        _exit(2)
    }
    FuzzTargets.prepare(target)
    return target
}()

#if !FUZZING
/// Replays inputs without libFuzzer: `FUZZ_TARGET=path SidecarFuzz FILE|DIR...` (or `--target path` first).
@main
struct SidecarFuzzMain {
    static func main() {
        var args = Array(CommandLine.arguments.dropFirst())
        if args.count >= 2, args[0] == "--target" {
            setenv("FUZZ_TARGET", args[1], 1)
            args.removeFirst(2)
        }
        if args.isEmpty || args.contains("-h") || args.contains("--help") {
            print("usage: FUZZ_TARGET=<target> SidecarFuzz [--target <target>] FILE|DIR...")
            print("targets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: " "))")
            exit(args.isEmpty ? 2 : 0)
        }
        let target = selectedTarget
        var files: [String] = []
        for a in args { files.append(contentsOf: listFiles(a)) }
        FuzzTargets.collectOutcomes = true
        let start = monotonicSeconds()
        var unreadable = 0
        for file in files {
            guard let bytes = readFile(file) else {
                // A running libFuzzer replaces corpus files as it shrinks them: skip, but fail if nothing was read.
                printErr("SidecarFuzz: cannot read \(file)\n")
                unreadable += 1
                continue
            }
            if files.count <= 20 { print("replaying \(file) (\(bytes.count) bytes)") }
            bytes.withUnsafeBufferPointer { FuzzTargets.run(target, $0) }
        }
        let elapsed = monotonicSeconds() - start
        let outcomes = FuzzTargets.outcomes.sorted { $0.value > $1.value }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        if unreadable == files.count { _exit(2) }
        print("SidecarFuzz \(target.rawValue): \(files.count - unreadable) input(s) replayed in \(String(format3(elapsed))) s, no invariant failed; outcomes: \(outcomes)")
    }

    static func listFiles(_ path: String) -> [String] {
        var st = stat()
        guard stat(path, &st) == 0 else { return [path] }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { return [path] }
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name == "." || name == ".." || name.hasPrefix(".") { continue }
            out.append(path + "/" + name)
        }
        return out.sorted()
    }

    static func readFile(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n > 0 { out.append(contentsOf: buffer[0..<n]) }
            if n < buffer.count { break }
        }
        return ferror(f) == 0 ? out : nil
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func format3(_ d: Double) -> String {
        let ms = Int((d * 1000).rounded())
        let frac = String(ms % 1000)
        return "\(ms / 1000).\(String(repeating: "0", count: 3 - frac.count))\(frac)"
    }
}
#endif
