import Foundation
import Testing

@testable import Shared

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
                    let json =
                        #"{"type":"track","event":"Product Viewed","messageId":"\#(id)","timestamp":"2026-11-25T05:00:00Z","anonymousId":"a\#(partition)","context":{"storeId":"s"},"properties":{}}"#
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
                        (
                            partition: try row.decode(Int.self, at: 0) ?? -1, offset: try row.decode(Int64.self, at: 1) ?? -1,
                            command: try row.decode(String.self, at: 2) ?? ""
                        )
                    }
            }
            #expect(stored.count == 12)
            for row in stored {
                #expect(row.command == CommandID.make(store: "s", causation: "held-before-m-\(row.partition)-\(row.offset)", name: "released"))
            }
            #expect(Set(stored.map(\.partition)) == [0, 1, 2, 3])
        }
    }

    /// A batch read again after PostgreSQL recorded it — a COMMIT whose outcome was lost to a restart, or a partition
    /// started from Kafka's older committed offsets — changes nothing: its events are not applied again, and its
    /// malformed message, which has no messageId to de-duplicate on, is not dead-lettered twice. The recorded offsets
    /// never move back.
    @Test func aBatchPostgreSQLRecordedAlreadyIsNotAppliedOrDeadLetteredAgain() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 2)
            defer { postgres.close() }
            _ = try await Migrator(client: postgres, logger: TestEnvironment.logger).migrate(try Migration.shared())
            let partition = TopicPartition(topic: "in", partition: 0)
            func message(_ offset: Int64, _ text: String) -> KafkaMessage {
                KafkaMessage(topicPartition: partition, offset: offset, key: nil, value: ArraySlice(text.utf8), headers: [], timestampMilliseconds: nil)
            }
            let batch = [
                message(
                    0,
                    #"{"type":"track","event":"Product Viewed","messageId":"m-0","timestamp":"2026-11-25T05:00:00Z","anonymousId":"a","context":{"storeId":"s"},"properties":{}}"#
                ),
                message(1, "not json"),
                message(
                    2,
                    #"{"type":"track","event":"Product Viewed","messageId":"m-2","timestamp":"2026-11-25T05:00:00Z","anonymousId":"a","context":{"storeId":"s"},"properties":{}}"#
                ),
            ]
            let configuration = PipelineConfiguration(worker: "BatchTest", groupID: "fence-test", inputTopic: "in")
            func commit(_ messages: [KafkaMessage]) async throws -> BatchTransaction.Committed {
                try await BatchTransaction(
                    events: [], deadLetters: [], undecoded: messages, nextOffsets: messages.nextOffsets, handler: ErasedHandler(DividesByZero()),
                    attempts: [:], configuration: configuration
                ).commit(on: postgres)
            }
            let first = try await commit(batch)
            #expect(first.handled.count == 2 && first.deadLetters.count == 1 && first.outbox.count == 3)

            let again = try await commit(batch)
            #expect(again.handled.isEmpty && again.deadLetters.isEmpty && again.outbox.isEmpty, "\(again.outbox.map(\.message.topic))")
            #expect(again.duplicates == 3)
            // The first two again, below the recorded offset: the offset stays where it was.
            _ = try await commit(Array(batch.prefix(2)))
            let rows = try await postgres.withConnection { connection in
                (
                    outbox: try connection.query("SELECT count(*) FROM rapport_outbox").first?.decode(Int.self, at: 0),
                    offset: try connection.query("SELECT next_offset FROM rapport_consumer_offsets WHERE group_id = 'fence-test'").first?.decode(
                        Int64.self, at: 0)
                )
            }
            #expect(rows.outbox == 3, "one dead letter and two commands, however often the batch is read")
            #expect(rows.offset == 3)
        }
    }

    /// Divides by zero in PostgreSQL for events named "Divide" (SQLSTATE 22012, a data error); emits one command for
    /// every other event.
    struct DividesByZero: PipelineHandler {
        func handle(_ events: [InboundEvent<SegmentMessage>], connection: PostgresConnection) throws -> [OutboundCommand] {
            try events.map { event in
                if event.message.event == "Divide" { _ = try connection.query("SELECT 1 / (random() * 0)::int") }
                return event.caused(
                    OutboundCommand(
                        topic: "out", key: event.message.shopperKey, name: "echo", storeID: event.message.storeID, causationID: event.message.messageID,
                        value: Array(#"{"command_id":"x"}"#.utf8)))
            }
        }
    }

    @Test func aDataErrorInTheDeduplicationOrAHandlerDeadLettersItsMessageAtOnceAndTheRestCommits() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 2)
            defer { postgres.close() }
            _ = try await Migrator(client: postgres, logger: TestEnvironment.logger).migrate(try Migration.shared())
            let topicPartition = TopicPartition(topic: "in", partition: 0)
            // Built directly, past the decoder's checks: a NUL in messageId fails the pipeline's own de-duplication
            // insert ("contains a NUL character"), which once stopped the worker.
            let names = ["Viewed", "Viewed", "Divide", "Viewed", "Viewed"]
            let ids = ["m-0", "m-1", "m-2", "m-\u{0}3", "m-4"]
            var events: [InboundEvent<any Sendable>] = []
            for (offset, (name, id)) in zip(names, ids).enumerated() {
                let message = SegmentMessage(
                    kind: .track, messageID: id, timestamp: Date(), userID: nil, anonymousID: "a", storeID: "s", event: name, properties: [:], traits: [:],
                    context: [:])
                let source = KafkaMessage(topicPartition: topicPartition, offset: Int64(offset), key: nil, value: ArraySlice("{}".utf8), headers: [])
                events.append(InboundEvent(message: message, event: message, source: source))
            }
            let configuration = PipelineConfiguration(worker: "BatchTest", groupID: "data-errors", inputTopic: "in")
            let transaction = BatchTransaction(
                events: events, deadLetters: [], nextOffsets: [topicPartition: 5], handler: ErasedHandler(DividesByZero()), attempts: [:],
                configuration: configuration)
            // No RetryBatch: a data error fails the same way every time, so it is not tried again.
            let committed = try await transaction.commit(on: postgres)
            #expect(committed.handled.map(\.message.messageID) == ["m-0", "m-1", "m-4"])
            #expect(committed.commands.count == 3)
            let letters = committed.deadLetters.sorted { $0.source.offset < $1.source.offset }
            #expect(letters.map(\.source.offset) == [2, 3])
            #expect(letters.allSatisfy { $0.failure.reason == .handlerFailure })
            #expect(letters.first?.failure.message.contains("SQLSTATE 22012") == true, "\(letters.first?.failure.message ?? "")")
            #expect(letters.last?.failure.message.contains("NUL") == true, "\(letters.last?.failure.message ?? "")")
            let applied = try await postgres.withConnection { connection in
                try connection.query("SELECT message_id FROM rapport_processed_messages WHERE group_id = 'data-errors' ORDER BY message_id")
                    .map { try $0.decode(String.self, at: 0) ?? "" }
            }
            #expect(applied == ["m-0", "m-1", "m-4"], "the failed messages' de-duplication rolled back with them: a replay applies them")
        }
    }

    @Test func noWorkerAppliesAnEventOfAnAddressErasedInAStoreThatKeepsTheHashes() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 2)
            defer { postgres.close() }
            _ = try await Migrator(client: postgres, logger: TestEnvironment.logger).migrate(try Migration.shared())
            let stores = try StoreDirectory(
                json: Array(#"{"stores": {"keeps": {"keep_erasure_hash": true}, "forgets": {}}}"#.utf8), setting: "STORE_SETTINGS_FILE")
            let erased = try #require(try ErasedAddresses(stores: stores, environment: Environment(["ERASURE_HASH_SALT": "a-salt-of-sixteen-chars"])))
            try await postgres.withConnection { connection in
                try erased.record(.init(storeID: "keeps", email: "gone@example.com"), connection: connection)
                try erased.record(.init(storeID: "forgets", email: "gone@example.com"), connection: connection)
            }
            let topicPartition = TopicPartition(topic: "in", partition: 0)
            // An order replayed from the erased address, the same address in a store that keeps no hashes, another
            // address in the same store: only the first is refused (any worker: the check is the pipeline's).
            let cases = [("keeps", "Gone@Example.com"), ("forgets", "gone@example.com"), ("keeps", "here@example.com")]
            var events: [InboundEvent<any Sendable>] = []
            for (offset, (store, email)) in cases.enumerated() {
                let message = SegmentMessage(
                    kind: .track, messageID: "m-\(offset)", timestamp: Date(), userID: nil, anonymousID: "a", storeID: store, event: "Order Completed",
                    properties: ["email": .string(email)], traits: [:], context: [:])
                let source = KafkaMessage(topicPartition: topicPartition, offset: Int64(offset), key: nil, value: ArraySlice("{}".utf8), headers: [])
                events.append(InboundEvent(message: message, event: message, source: source))
            }
            var configuration = PipelineConfiguration(worker: "BatchTest", groupID: "erased", inputTopic: "in")
            configuration.erasedAddresses = erased
            func commit() async throws -> BatchTransaction.Committed {
                try await BatchTransaction(
                    events: events, deadLetters: [], nextOffsets: [topicPartition: 3], handler: ErasedHandler(DividesByZero()), attempts: [:],
                    configuration: configuration
                ).commit(on: postgres)
            }
            let first = try await commit()
            #expect(first.handled.map(\.message.messageID) == ["m-1", "m-2"])
            #expect(first.skipped == 1 && first.commands.count == 2)
            let again = try await commit()
            #expect(again.handled.isEmpty && again.duplicates == 3, "redelivered, every one is a duplicate, the refused one included")
        }
    }
}
