import Foundation
import Shared
import Testing

/// The de-duplication window: processed message ids older than it are forgotten, a chunk at a time, the group's only.
@Suite struct DeduplicationRetentionTests {
    @Test func idsPastTheWindowAreForgottenInChunksAndOnlyForTheirGroup() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let client = TestEnvironment.postgres(url: url, poolSize: 2)
            defer { client.close() }
            _ = try await Migrator(client: client, logger: TestEnvironment.logger).migrate(try Migration.shared())
            _ = try await client.withConnection { connection in
                try connection.execute(
                    """
                    INSERT INTO rapport_processed_messages (group_id, store_id, message_id, processed_at)
                    SELECT g, 's', g || '-' || d || '-' || n, now() - make_interval(days => d)
                    FROM (VALUES ('mine', 40, 25), ('mine', 1, 5), ('theirs', 40, 3)) AS v(g, d, count), generate_series(1, v.count) AS n
                    """)
            }
            let retention = DeduplicationRetention(
                postgres: client, groupID: "mine", window: .seconds(30 * 86_400), chunk: 10, logger: TestEnvironment.logger)
            #expect(try await retention.purge() == 25, "three chunks: 10, 10, 5")
            #expect(try await retention.purge() == 0)
            let left = try await client.withConnection { connection in
                try connection.query("SELECT group_id, count(*) FROM rapport_processed_messages GROUP BY group_id ORDER BY group_id")
                    .map { "\(try $0.decode(String.self, at: 0) ?? "") \(try $0.decode(Int.self, at: 1) ?? 0)" }
            }
            #expect(left == ["mine 5", "theirs 3"])
        }
    }
}
