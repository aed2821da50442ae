import Foundation
import Testing
@testable import SidecarCore
import VectorFixtures

/// The README's configuration reference must list every setting the code reads, with the same flag, env name, file
/// key and default — so the documentation cannot drift from `Settings.all`.
@Suite struct ConfigReferenceTests {
    static let readme: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)) ?? ""
    }()

    @Test(arguments: Settings.all.map(\.file))
    func everySettingHasAREADMERow(file: String) throws {
        let s = try #require(Settings.all.first { $0.file == file })
        let row = "| `--\(s.flag ?? "")` | `\(s.env)` | `\(s.file)` | `\(s.defaultValue)` |"
        #expect(Self.readme.contains(row), "README.md lacks the row starting \(row)")
    }

    @Test func readmeHasNoRowForAnUnknownSetting() {
        let known = Set(Settings.all.map(\.env))
        let rows = Self.readme.split(separator: "\n").filter { $0.hasPrefix("| `--") }
        #expect(!rows.isEmpty)
        for row in rows {
            let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            let env = cells[1].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            #expect(known.contains(env), "README.md documents \(env), which the code does not read")
        }
    }

    @Test func secretsAreDocumented() {
        for name in Settings.secretVariables { #expect(Self.readme.contains("`\(name)`")) }
    }
}
