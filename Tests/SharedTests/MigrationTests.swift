import Foundation
import Testing

@testable import Shared

@Suite struct MigrationTests {
    private func directory(_ files: [String: String]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rapport-migrations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        for (name, text) in files { try Data(text.utf8).write(to: url.appendingPathComponent(name)) }
        return url
    }

    @Test func loadsNumberedFilesInOrder() throws {
        let url = try directory(["0002_b.sql": "B", "0010_c.sql": "C", "0001_a.sql": "A", "README.md": "x"])
        let migrations = try Migration.load(component: "t", directory: url)
        #expect(migrations.map(\.version) == [1, 2, 10])
        #expect(migrations.map(\.name) == ["a", "b", "c"])
    }

    @Test func refusesMisnamedOrDuplicateNumbers() throws {
        #expect(throws: MigrationError.self) { try Migration.load(component: "t", directory: try directory(["first.sql": "A"])) }
        #expect(throws: MigrationError.self) {
            try Migration.load(component: "t", directory: try directory(["0001_a.sql": "A", "1_b.sql": "B"]))
        }
    }

    @Test func checksumFollowsTheText() {
        let a = Migration(component: "t", version: 1, name: "a", sql: "CREATE TABLE a ()")
        var b = a
        b.sql += " "
        #expect(a.checksum.count == 16)
        #expect(a.checksum != b.checksum)
        #expect(a.checksum == Migration(component: "x", version: 9, name: "z", sql: a.sql).checksum)
    }

    @Test func theSharedMigrationsLoadFromTheBundleInOrder() throws {
        let migrations = try Migration.shared()
        #expect(migrations.allSatisfy { $0.component == "shared" })
        #expect(migrations.map(\.version) == migrations.map(\.version).sorted())
    }
}
