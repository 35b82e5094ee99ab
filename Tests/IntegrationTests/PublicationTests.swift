import Foundation
import Testing

@testable import Shared

/// A batch's outbox rows published in the background while the pipeline works on the next batch (``Publication``),
/// against real PostgreSQL and the embedded Kafka.
@Suite(.serialized) struct PublicationTests {
    /// A partition revoked while its batch's rows are on their way waits for them: when the revocation returns, every
    /// row is on the topic and gone from the outbox, so the partition's next owner relays none of them again. Without
    /// the wait the revocation returns at once, with the rows still in the outbox.
    @Test func aRevocationWaitsForTheRowsOnTheirWay() async throws {
        try await TestEnvironment.withPipeline(8) { fixture in
            let postgres = TestEnvironment.postgres(url: fixture.databaseURL, poolSize: 2)
            defer { postgres.close() }
            _ = try await Migrator(client: postgres, logger: TestEnvironment.logger).migrate(try Migration.shared())
            let input = TopicPartition(topic: fixture.inputTopic, partition: 2)
            let entries = (0..<2_000).map { n in
                Outbox.Entry(
                    source: input, sourceOffset: Int64(n),
                    message: KafkaOutboundMessage(
                        topic: fixture.commandsTopic, key: Array("\(fixture.store)/\(n % 50)".utf8),
                        value: Array(#"{"command_id":"\#(fixture.store)-\#(n)","store_id":"\#(fixture.store)"}"#.utf8)),
                    commandID: "\(fixture.store)-\(n)")
            }
            let group = fixture.group
            let rows = try await postgres.withTransaction { connection in
                zip(try Outbox.write(entries, group: group, connection: connection), entries).map { Outbox.Row(id: $0, entry: $1) }
            }
            let before = try await fixture.highWatermarks(fixture.commandsTopic).values.reduce(0, +)
            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(kafka: TestEnvironment.kafka()), logger: TestEnvironment.logger)
            let rebalance = PartitionRebalanceListener(postgres: postgres, groupID: group, logger: TestEnvironment.logger)

            let publication = Publication(rows: rows, nextOffsets: [input: 2_000], producer: producer, postgres: postgres)
            rebalance.publication.set(publication)
            // On a thread of its own, as librdkafka's poll thread calls it.
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                Thread {
                    rebalance.partitionsRevoked([input])
                    done.resume()
                }.start()
            }
            let left = try await postgres.withConnection { connection in
                try Outbox.pending(group: group, topic: input.topic, partitions: [input.partition], limit: 10_000, connection: connection)
            }
            #expect(left.count == 0, "\(left.count) of the revoked partition's rows still in the outbox when the revocation returned")
            let first = try await publication.firstAttempt()
            #expect(first.deleted)
            #expect(first.results.allSatisfy { (try? $0.get()) != nil })
            #expect(try await fixture.highWatermarks(fixture.commandsTopic).values.reduce(0, +) - before == 2_000)
            try await producer.close()
        }
    }
}
