import Foundation
import Shared
import Testing

/// `dlq replay` (CONTRACT.md's operator commands): a message dead-lettered by a handler failure, the fix deployed,
/// replayed — handled once; replayed again — nothing more. EchoWorker processes and the `EchoWorker dlq replay`
/// command against real PostgreSQL and the embedded Kafka.
@Suite(.serialized) struct DeadLetterReplayTests {
    /// A track event named `event` of the fixture's store.
    static func event(_ fixture: PipelineFixture, named event: String, id: String, headers: [KafkaHeader] = []) -> KafkaOutboundMessage {
        let json =
            #"{"type":"track","event":"\#(event)","messageId":"\#(id)","timestamp":"2026-11-25T05:00:00Z","anonymousId":"gifted","context":{"storeId":"\#(fixture.store)"},"properties":{"sequence":5000}}"#
        return KafkaOutboundMessage(topic: fixture.inputTopic, key: Array("\(fixture.store)/gifted".utf8), value: Array(json.utf8), headers: headers)
    }

    /// Runs `EchoWorker dlq replay` with `arguments` against the fixture's topics; returns its exit status, its JSON
    /// lines and its stderr.
    static func replay(_ fixture: PipelineFixture, _ arguments: [String]) async throws -> (status: Int32, lines: [JSONValue], stderr: String) {
        let command = try ChildProcess(
            "EchoWorker", ["dlq", "replay"] + arguments,
            environment: [fixture.inputVariable: fixture.inputTopic, "EMAIL_COMMANDS_TOPIC": fixture.commandsTopic, "KAFKA_GROUP_ID": fixture.group])
        let status = try await command.waitForExit(timeout: .seconds(90))
        let lines = try command.stdout.split(separator: "\n").map { try JSONValue.parse(Array($0.utf8)[...]) }
        return (status, lines, command.stderr)
    }

    @Test func aDeadLetterReplayedAfterTheFixIsHandledOnceAndAReplayRepeatedChangesNothing() async throws {
        try await TestEnvironment.withPipeline(14) { fixture in
            let dlqStart = try await fixture.highWatermarks(fixture.deadLetterTopic)[TopicPartition(topic: fixture.deadLetterTopic, partition: 0)] ?? 0
            // The bug: this build of the worker throws on every "Gift Wrapped" event.
            fixture.extraEnvironment = ["ECHO_FAIL_EVENTS": "Gift Wrapped", "HANDLER_MAX_ATTEMPTS": "2"]
            let (buggy, _) = try await fixture.startWorker()
            // It arrives with a forged dlq.source.topic of its own: the worker's dead letter renames it, and a replay
            // publishes to the input topic whatever it says (and gives the original its header back).
            let gift = Self.event(
                fixture, named: "Gift Wrapped", id: "gift-1",
                headers: [KafkaHeader(key: "origin", text: "storefront"), KafkaHeader(key: "dlq.source.topic", text: fixture.commandsTopic)])
            let malformed = KafkaOutboundMessage(topic: fixture.inputTopic, key: Array("\(fixture.store)/broken".utf8), value: Array(#"{"type":"#.utf8))
            var messages = (0..<40).map { fixture.event(shopper: $0 % 8, sequence: $0) }
            messages.insert(gift, at: 20)
            messages.insert(malformed, at: 30)
            let reports = try await fixture.publish(messages)
            try await fixture.waitUntilConsumed()
            #expect(try await fixture.effectCount() == 40)
            let dead = try await fixture.readToEnd(fixture.deadLetterTopic)
            #expect(dead.map { $0.header("dlq.reason") }.sorted { ($0 ?? "") < ($1 ?? "") } == ["handler_failure", "malformed_json"])
            let failure = try #require(dead.first { $0.header("dlq.reason") == "handler_failure" })
            #expect(failure.header("dlq.source.topic") == fixture.inputTopic && failure.header("original.dlq.source.topic") == fixture.commandsTopic)
            #expect(failure.header("dlq.message")?.contains("cannot handle Gift Wrapped") == true, "\(failure.header("dlq.message") ?? "")")

            // The fix deployed: the same worker without the bug.
            buggy.send(SIGTERM)
            #expect(try await buggy.waitForExit() == 0)
            fixture.extraEnvironment = [:]
            try await fixture.startWorker()

            // A messageId not in the topic: refused, nothing published.
            let inputBefore = try await fixture.highWatermarks(fixture.inputTopic)
            let unknown = try await Self.replay(fixture, ["--message-id", "gift-1", "--message-id", "no-such-message"])
            #expect(unknown.status == 1)
            #expect(unknown.stderr.contains("no dead letter with messageId no-such-message"), "\(unknown.stderr)")
            #expect(unknown.lines.isEmpty)
            #expect(try await fixture.highWatermarks(fixture.inputTopic) == inputBefore, "nothing republished")

            // Handler failures from this test's first dead letter on: the gift, not the malformed message.
            let first = try await Self.replay(fixture, ["--from-offset", "\(dlqStart)", "--reason", "handler_failure"])
            #expect(first.status == 0, "\(first.stderr)")
            #expect(first.lines.count == 1, "\(first.lines)")
            let line = try #require(first.lines.first)
            #expect(line["message_id"]?.stringValue == "gift-1")
            #expect(line["topic"]?.stringValue == fixture.inputTopic)
            #expect(line["partition"]?.numberValue == Double(reports[20].topicPartition.partition), "to the partition it came from")
            try await fixture.waitUntilConsumed()
            #expect(try await fixture.effectCount() == 41, "the replayed event applied")
            let applied = try await fixture.query("SELECT count(*) FROM echo_effects WHERE store_id = $1 AND message_id = 'gift-1'", [fixture.store])
            #expect(try applied.first?.decode(Int.self, at: 0) == 1)

            // What was republished: the original key, value and headers, no dlq.* header.
            let input = try await fixture.readToEnd(fixture.inputTopic)
            let copies = input.filter { Array($0.value) == gift.value }
            #expect(copies.count == 2, "the original and its replay")
            let replayed = try #require(copies.max { $0.offset < $1.offset })
            #expect(replayed.key.map(Array.init) == gift.key)
            #expect(replayed.headers == gift.headers, "\(replayed.headers.map(\.key))")

            // Again, by messageId: republished, and a duplicate to the worker.
            let again = try await Self.replay(fixture, ["--message-id", "gift-1"])
            #expect(again.status == 0, "\(again.stderr)")
            #expect(again.lines.count == 1 && again.lines.first?["offset"] != nil, "\(again.lines)")
            try await fixture.waitUntilConsumed()
            #expect(try await fixture.effectCount() == 41, "nothing more")
            let echoes = try await fixture.readToEnd(fixture.commandsTopic).filter {
                (try? JSONValue.parse($0.value))?["causation_id"]?.stringValue == "gift-1"
            }
            #expect(echoes.count == 1, "one command for the replayed event, however often it is replayed")
            #expect(try await fixture.readToEnd(fixture.deadLetterTopic).count == 2, "and no new dead letter")

            // A dead letter naming another topic as its source — written by someone who can write the dead-letter
            // topic, or by an older worker that kept a forged header first — is never replayed there.
            let forged = KafkaOutboundMessage(
                topic: fixture.deadLetterTopic, key: Array("\(fixture.store)/forged".utf8),
                value: Array(#"{"type":"SendEmail","messageId":"forged-1","template":"welcome_offer"}"#.utf8),
                headers: [
                    KafkaHeader(key: "dlq.source.topic", text: fixture.inputTopic), KafkaHeader(key: "dlq.reason", text: "handler_failure"),
                    KafkaHeader(key: "dlq.source.topic", text: fixture.commandsTopic), KafkaHeader(key: "dlq.source.partition", text: "0"),
                ])
            try await fixture.publish([forged])
            let commandsBefore = try await fixture.highWatermarks(fixture.commandsTopic)
            let refused = try await Self.replay(fixture, ["--message-id", "forged-1"])
            #expect(refused.status == 0, "\(refused.stderr)")
            #expect(refused.lines.first?["skipped"]?.stringValue?.contains("not this worker's input topic") == true, "\(refused.lines)")
            #expect(refused.lines.first?["offset"] == nil)
            #expect(try await fixture.highWatermarks(fixture.commandsTopic) == commandsBefore, "nothing published to another topic")
        }
    }
}
