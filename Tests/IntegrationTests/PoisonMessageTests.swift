import Foundation
import Shared
import Testing

/// One bad message never stops a worker: what cannot be published as it is goes as a smaller copy, a worker set up
/// wrong for the cluster waits not-ready without skipping anything, and liveness fails only when the loop really
/// hangs. EchoWorker processes against real PostgreSQL and the embedded Kafka.
@Suite(.serialized) struct PoisonMessageTests {
    /// A producer for test input that may send what the workers' producers refuse.
    static func largeMessageProducer() throws -> KafkaProducer {
        var configuration = KafkaProducerConfiguration(kafka: TestEnvironment.kafka())
        configuration.messageMaxBytes = 8 << 20
        return try KafkaProducer(configuration: configuration, logger: TestEnvironment.logger)
    }

    /// Polls `/healthz` until cancelled; returns how many answers were not 200.
    static func watchLiveness(_ port: Int) -> Task<Int, Never> {
        Task {
            var failures = 0
            while !Task.isCancelled {
                if await probe(port, "/healthz")?.status != 200 { failures += 1 }
                try? await Task.sleep(for: .milliseconds(100))
            }
            return failures
        }
    }

    /// Waits until the group's committed Kafka offsets reach `watermarks`: no lag left.
    static func waitForNoLag(_ fixture: PipelineFixture, _ watermarks: [TopicPartition: Int64]) async throws {
        let reader = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(kafka: TestEnvironment.kafka(), groupID: fixture.group), logger: TestEnvironment.logger)
        try await eventually("the group's committed offsets at the high watermarks", timeout: .seconds(60)) {
            let committed = try await reader.committedOffsets(for: Array(watermarks.keys))
            return watermarks.allSatisfy { $0.value == 0 || committed[$0.key] == $0.value }
        }
        try await reader.close()
    }

    @Test func anInputOverTheProducersLimitGoesToTheDLQTruncatedAndEverythingElseMovesOn() async throws {
        try await TestEnvironment.withPipeline(9) { fixture in
            let (worker, port) = try await fixture.startWorker()
            try await eventually("ready", timeout: .seconds(30)) { await probe(port, "/readyz")?.status == 200 }
            let liveness = Self.watchLiveness(port)

            // 2 MiB, accepted by the broker, over MAX_MESSAGE_BYTES (1 MiB) and the producer's limit (1 MiB + 64 KiB).
            let big = KafkaOutboundMessage(
                topic: fixture.inputTopic, key: Array("\(fixture.store)/big".utf8),
                value: Array(("{\"pad\":\"" + String(repeating: "x", count: 2 << 20) + "\"}").utf8), headers: [KafkaHeader(key: "origin", text: "test")])
            // A valid event whose command would be 1.2 MB: the producer would refuse it.
            let heavy = fixture.event(shopper: 7, sequence: 9999, id: "heavy", extra: #","pad_bytes":1200000"#)
            var messages = (0..<300).map { fixture.event(shopper: $0 % 20, sequence: $0) }
            messages.insert(big, at: 100)
            messages.insert(heavy, at: 200)
            let producer = try Self.largeMessageProducer()
            let reports = try await producer.send(messages).map { try $0.get() }

            let watermarks = try await fixture.waitUntilConsumed()
            try await Self.waitForNoLag(fixture, watermarks)
            liveness.cancel()
            #expect(await liveness.value == 0, "/healthz stayed 200 throughout")
            #expect(try await fixture.effectCount() == 300, "every good event applied")
            #expect(try await fixture.readToEnd(fixture.commandsTopic).count == 300)

            let dead = try await fixture.readToEnd(fixture.deadLetterTopic)
            #expect(dead.count == 2)
            let truncated = try #require(dead.first { $0.header("dlq.reason") == "too_large" })
            #expect(truncated.header("dlq.truncated") == "true")
            #expect(truncated.header("dlq.original.size") == String(big.value.count))
            let digest = try await fixture.query("SELECT encode(sha256($1::bytea), 'hex')", [PostgresBytes(big.value)]).first?.decode(String.self, at: 0)
            #expect(truncated.header("dlq.original.sha256") == digest, "PostgreSQL's SHA-256 of the original bytes")
            #expect(truncated.value.count > 1 << 20, "as much of the value as fits")
            #expect(Array(truncated.value) == Array(big.value.prefix(truncated.value.count)), "the first bytes of the original")
            #expect(truncated.header("origin") == "test", "original headers kept")
            #expect(truncated.key.map(Array.init) == big.key)
            #expect(truncated.header("dlq.source.offset") == String(reports[100].offset))

            let refused = try #require(dead.first { $0.header("dlq.reason") == "handler_failure" })
            #expect(refused.header("dlq.message")?.contains("message.max.bytes") == true, "\(refused.header("dlq.message") ?? "")")
            #expect(Array(refused.value) == heavy.value, "the event whose command cannot be published, whole")
            #expect(refused.header("dlq.source.offset") == String(reports[200].offset))
            #expect(worker.isRunning)
        }
    }

    @Test(.enabled(if: TestEnvironment.kafkaControlDirectory != nil, "needs the embedded Kafka that scripts/test started"))
    func aMissingDeadLetterTopicHoldsTheWorkerNotReadyUntilItExistsAndNothingIsLost() async throws {
        let control = try #require(TestEnvironment.kafkaControlDirectory)
        try await TestEnvironment.withPipeline(10) { fixture in
            // The producer gives up waiting for a topic's metadata after 1 s instead of 30.
            fixture.extraEnvironment = ["KAFKA_TOPIC_METADATA_PROPAGATION_MAX_MS": "1000"]
            let (worker, port) = try await fixture.startWorker()
            try await eventually("ready", timeout: .seconds(30)) { await probe(port, "/readyz")?.status == 200 }
            let liveness = Self.watchLiveness(port)
            var messages = (0..<100).map { fixture.event(shopper: $0 % 10, sequence: $0) }
            let bad = KafkaOutboundMessage(topic: fixture.inputTopic, key: Array("\(fixture.store)/bad".utf8), value: Array("not json".utf8))
            messages.insert(bad, at: 50)
            let reports = try await fixture.publish(messages)
            let badReport = reports[50]

            try await eventually("not ready, saying why", timeout: .seconds(60)) {
                guard let ready = await probe(port, "/readyz"), ready.status == 503 else { return false }
                return ready.body.contains("\"publishing\":false") && ready.body.contains("\(fixture.deadLetterTopic) does not exist")
            }
            #expect(worker.stdout.contains("cannot publish: topic \(fixture.deadLetterTopic) does not exist"))
            #expect(worker.stdout.contains("SHOPPER_EVENTS_TOPIC + \\\"-dlq\\\""), "the log line names the setting")
            #expect(await metric(port, "rapport_publish_blocked") == 1)
            let reader = try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(kafka: TestEnvironment.kafka(), groupID: fixture.group), logger: TestEnvironment.logger)
            let committed = try await reader.committedOffsets(for: [badReport.topicPartition])
            try await reader.close()
            #expect((committed[badReport.topicPartition] ?? 0) <= badReport.offset, "Kafka's offsets stop before the message")

            // An operator creates the topic: the broker stops answering that it does not exist.
            try Data("topic-error \(fixture.deadLetterTopic) 0\n".utf8).write(to: control.appendingPathComponent("\(fixture.group).cmd"))

            try await eventually("ready again", timeout: .seconds(60)) { await probe(port, "/readyz")?.status == 200 }
            let watermarks = try await fixture.waitUntilConsumed()
            try await Self.waitForNoLag(fixture, watermarks)
            liveness.cancel()
            #expect(await liveness.value == 0, "/healthz stayed 200 throughout")
            #expect(await metric(port, "rapport_publish_blocked") == 0)
            let dead = try await fixture.readToEnd(fixture.deadLetterTopic)
            #expect(dead.count == 1 && dead.first?.header("dlq.reason") == "malformed_json")
            #expect(dead.first?.header("dlq.source.offset") == String(badReport.offset))
            #expect(try await fixture.effectCount() == 100)
            #expect(try await fixture.readToEnd(fixture.commandsTopic).count == 100, "nothing skipped or lost")
        }
    }

    @Test func livenessFailsOnlyWhileThePollLoopHangsAndTheDrainTimeoutEndsAHungWorker() async throws {
        try await TestEnvironment.withPipeline(11) { fixture in
            fixture.extraEnvironment = ["LIVENESS_WINDOW_SECONDS": "2", "DRAIN_TIMEOUT_SECONDS": "2"]
            let (worker, port) = try await fixture.startWorker()
            try await eventually("ready", timeout: .seconds(30)) { await probe(port, "/readyz")?.status == 200 }
            #expect(await probe(port, "/healthz")?.status == 200)
            // The handler blocks for 6 s: the loop stops turning.
            try await fixture.publish([fixture.event(shopper: 1, sequence: 1, extra: #","hang_ms":6000"#)])
            try await eventually("/healthz 503 while the loop hangs", timeout: .seconds(10)) { await probe(port, "/healthz")?.status == 503 }
            try await eventually("/healthz 200 once it turns again", timeout: .seconds(15)) { await probe(port, "/healthz")?.status == 200 }
            try await eventually("the event applied", timeout: .seconds(15)) { try await fixture.effectCount() == 1 }

            // Hung for longer than the drain timeout: SIGTERM ends the process anyway, and nothing is lost.
            try await fixture.publish([fixture.event(shopper: 2, sequence: 2, extra: #","hang_ms":12000"#)])
            try await eventually("hanging", timeout: .seconds(10)) {
                guard worker.stdout.contains(#""hang_ms":"12000""#) else { return false }
                return await probe(port, "/healthz")?.status == 503
            }
            let sent = ContinuousClock.now
            worker.send(SIGTERM)
            #expect(try await worker.waitForExit(timeout: .seconds(15)) == 1)
            #expect(ContinuousClock.now - sent < .seconds(8), "drain timeout 2 s, then the watchdog")
            #expect(worker.stdout.contains("drain did not finish within DRAIN_TIMEOUT_SECONDS"))
            try await fixture.startWorker()
            try await fixture.waitUntilConsumed(timeout: .seconds(60))
            #expect(try await fixture.effectCount() == 2, "the hung event applied by the next start")
        }
    }

    @Test func outboxRowsLeftByACrashArePublishedOldestFirst() async throws {
        try await TestEnvironment.withPipeline(12) { fixture in
            let migrate = try ChildProcess("EchoWorker", ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await migrate.waitForExit() == 0)
            // What a worker killed between COMMIT and publish leaves: rows of several input partitions, one shopper.
            for sequence in 0..<40 {
                _ = try await fixture.query(
                    """
                    INSERT INTO rapport_outbox (group_id, source_topic, source_partition, source_offset, topic, key, value, headers, command_id)
                    VALUES ($1, $2, $3, $4, $5, convert_to($6, 'UTF8'), convert_to($7, 'UTF8'), ''::bytea, $7)
                    """,
                    [fixture.group, fixture.inputTopic, Int32(sequence % 4), Int64(sequence), fixture.commandsTopic, "\(fixture.store)/s", "left-\(sequence)"])
            }
            try await fixture.startWorker()
            try await fixture.waitUntilConsumed()
            let relayed = try await fixture.readToEnd(fixture.commandsTopic)
            #expect(relayed.map { String(decoding: $0.value, as: UTF8.self) } == (0..<40).map { "left-\($0)" }, "each once, oldest first")
        }
    }

    @Test func settingsGivenAsFilesAreReadByARunningWorker() async throws {
        try await TestEnvironment.withPipeline(13) { fixture in
            let folder = TestEnvironment.runDirectory
            let url = folder.appendingPathComponent(TestEnvironment.unique("database-url"))
            let group = folder.appendingPathComponent(TestEnvironment.unique("group"))
            try Data((fixture.databaseURL + "\n").utf8).write(to: url)
            try Data(fixture.group.utf8).write(to: group)
            fixture.unsetEnvironment = ["DATABASE_URL", "KAFKA_GROUP_ID"]
            fixture.extraEnvironment = ["DATABASE_URL_FILE": url.path, "KAFKA_GROUP_ID_FILE": group.path]
            try await fixture.startWorker()
            try await fixture.publish((0..<20).map { fixture.event(shopper: $0, sequence: $0) })
            try await fixture.waitUntilConsumed()
            #expect(try await fixture.effectCount() == 20, "applied in the database the file names, offsets under the group the file names")
        }
    }
}
