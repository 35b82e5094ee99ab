import Foundation
@testable import Shared
import Testing

/// One batch's transactions against real PostgreSQL, without Kafka: where each outbox row is filed.
@Suite struct BatchTransactionTests {
    /// Emits, for each event, a command whose causation is an *earlier* event not in this batch — as CaptureWorker's
    /// welcome held for confirmation is released by a later event — marked with the event that released it.
    struct ReleasesHeldCommands: PipelineHandler {
        func handle(_ events: [InboundEvent<SegmentMessage>], connection: PostgresConnection) throws -> [OutboundCommand] {
            events.map { event in
                event.caused(
                    OutboundCommand(
                        topic: "out", key: event.message.shopperKey, name: "released", storeID: event.message.storeID,
                        causationID: "held-before-\(event.message.messageID)", value: Array(#"{"command_id":"x"}"#.utf8)))
            }
        }
    }

    @Test func aCommandsOutboxRowBelongsToThePartitionAndOffsetOfTheEventThatCausedItWhateverItsCausationID() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 4)
            defer { postgres.close() }
            _ = try await Migrator(client: postgres, logger: TestEnvironment.logger).migrate(try Migration.shared())
            // Four partitions, three events each, in two transactions (groups of partitions).
            var events: [InboundEvent<any Sendable>] = []
            var nextOffsets: [TopicPartition: Int64] = [:]
            for partition in Int32(0)..<4 {
                for offset in Int64(10)..<13 {
                    let id = "m-\(partition)-\(offset)"
                    let json = #"{"type":"track","event":"Product Viewed","messageId":"\#(id)","timestamp":"2026-11-25T05:00:00Z","anonymousId":"a\#(partition)","context":{"storeId":"s"},"properties":{}}"#
                    guard case .event(let message) = try SegmentMessage.decode(ArraySlice(json.utf8), sizeLimit: 1 << 20) else {
                        Issue.record("not decoded: \(json)")
                        return
                    }
                    let topicPartition = TopicPartition(topic: "in", partition: partition)
                    let source = KafkaMessage(
                        topicPartition: topicPartition, offset: offset, key: nil, value: ArraySlice(json.utf8), headers: [], timestampMilliseconds: nil)
                    events.append(InboundEvent(message: message, event: message, source: source))
                    nextOffsets[topicPartition] = offset + 1
                }
            }
            var configuration = PipelineConfiguration(worker: "BatchTest", groupID: "batch-test", inputTopic: "in")
            configuration.transactionsPerBatch = 2
            let transaction = BatchTransaction(
                events: events, deadLetters: [], nextOffsets: nextOffsets, handler: ErasedHandler(ReleasesHeldCommands()), attempts: [:],
                configuration: configuration)
            let committed = try await transaction.commit(on: postgres)

            #expect(committed.outbox.count == 12)
            for row in committed.outbox {
                let id = "m-\(row.source.partition)-\(row.sourceOffset ?? -1)"
                #expect(row.commandID == CommandID.make(store: "s", causation: "held-before-\(id)", name: "released"), "row filed under \(id)")
            }
            let stored = try await postgres.withConnection { connection in
                try connection.query("SELECT source_partition, source_offset, command_id FROM rapport_outbox WHERE group_id = 'batch-test' ORDER BY id")
                    .map { row in
                        (partition: try row.decode(Int.self, at: 0) ?? -1, offset: try row.decode(Int64.self, at: 1) ?? -1, command: try row.decode(String.self, at: 2) ?? "")
                    }
            }
            #expect(stored.count == 12)
            for row in stored {
                #expect(row.command == CommandID.make(store: "s", causation: "held-before-m-\(row.partition)-\(row.offset)", name: "released"))
            }
            #expect(Set(stored.map(\.partition)) == [0, 1, 2, 3])
        }
    }
}
