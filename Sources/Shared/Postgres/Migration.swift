import Foundation

/// One numbered schema change of one component (`shared` or a worker), read from a `.sql` resource named
/// `NNNN_description.sql`.
public struct Migration: Sendable, Equatable {
    /// Who owns the tables it changes: `shared`, `capture`, `receipt`, `survey`.
    public var component: String
    /// Its number; migrations of a component apply in increasing order.
    public var version: Int
    /// The file name's description part.
    public var name: String
    /// The SQL text, applied as one script.
    public var sql: String

    /// Creates a migration.
    public init(component: String, version: Int, name: String, sql: String) {
        self.component = component
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// A stable fingerprint of the SQL text (FNV-1a, 64 bits, hex): an applied migration whose text later changes
    /// is refused.
    public var checksum: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in sql.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// Reads every `NNNN_name.sql` in `directory`, ordered by number.
    /// - Throws: ``MigrationError`` when a file name has no number or two files share one.
    public static func load(component: String, directory: URL) throws -> [Migration] {
        let files = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "sql" }
        var migrations: [Migration] = []
        for file in files {
            let base = file.deletingPathExtension().lastPathComponent
            let parts = base.split(separator: "_", maxSplits: 1)
            guard parts.count == 2, let version = Int(parts[0]) else {
                throw MigrationError("\(component): migration file \(file.lastPathComponent) is not named NNNN_description.sql")
            }
            let sql = try String(contentsOf: file, encoding: .utf8)
            migrations.append(Migration(component: component, version: version, name: String(parts[1]), sql: sql))
        }
        migrations.sort { $0.version < $1.version }
        for (previous, next) in zip(migrations, migrations.dropFirst()) where previous.version == next.version {
            throw MigrationError("\(component): two migrations are numbered \(next.version)")
        }
        return migrations
    }

    /// Reads the migrations in a target's `Migrations` resource folder.
    /// - Throws: ``MigrationError`` when the folder is missing from the bundle, or a file is misnamed.
    public static func load(component: String, bundle: Bundle) throws -> [Migration] {
        guard let directory = bundle.resourceURL?.appendingPathComponent("Migrations"),
            FileManager.default.fileExists(atPath: directory.path)
        else {
            throw MigrationError("\(component): no Migrations folder in \(bundle.bundlePath)")
        }
        return try load(component: component, directory: directory)
    }
}

/// A migration that cannot be applied; the message says which and why.
public struct MigrationError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Rapport's own migrations for the tables every worker shares (the pipeline's).
extension Migration {
    /// The `shared` component's migrations.
    public static func shared() throws -> [Migration] {
        try load(component: "shared", bundle: .module)
    }
}
