import Foundation
import Shared
import Testing

/// The shared pipeline, run by EchoWorker processes against real PostgreSQL and Kafka.
@Suite(.serialized) struct PipelineTests {
    /// The same message published twice: one effect, one set of commands.
    @Test func aMessagePublishedTwiceHasOneEffectAndOneCommand() async throws {
        try await TestEnvironment.withPipeline(1) { fixture in
            let events = (0..<50).map { fixture.event(shopper: $0 % 5, sequence: $0) }
            try await fixture.publish(events)
            let (worker, _) = try await fixture.startWorker()
            try await eventually("the first copies applied", timeout: .seconds(60)) { try await fixture.effectCount() == 50 }
            try await fixture.publish(events)  // again, in later batches
            let consumed = try await fixture.waitUntilConsumed()
            #expect(consumed.values.reduce(0, +) == 100, "both copies read")
            #expect(try await fixture.effectCount() == 50)
            let commands = try await fixture.readToEnd(fixture.commandsTopic)
            #expect(commands.count == 50, "one command per event, none for the duplicates")
            #expect(Set(commands.map { commandID($0) }).count == 50)
            #expect(try await fixture.readToEnd(fixture.deadLetterTopic).isEmpty, "a duplicate is not a bad message")
            #expect(worker.isRunning)
        }
    }

    /// 1,000 bad messages of every dead-letter reason mixed into good traffic.
    @Test func badMessagesGoToTheDeadLetterTopicWithReasonAndSourceWhileGoodOnesAreApplied() async throws {
        try await TestEnvironment.withPipeline(2) { fixture in
            fixture.extraEnvironment = ["MAX_MESSAGE_BYTES": "4096", "HANDLER_MAX_ATTEMPTS": "2"]
            let (worker, _) = try await fixture.startWorker()
            let reasons = DecodeFailure.Reason.allCases
            var messages: [KafkaOutboundMessage] = []
            var expected: [String: DecodeFailure.Reason] = [:]
            var good = 0
            for index in 0..<3000 {
                guard index % 3 == 0 else {
                    messages.append(fixture.event(shopper: index % 40, sequence: index))
                    good += 1
                    continue
                }
                let reason = reasons[(index / 3) % reasons.count]
                let key = "\(fixture.store)/bad/\(reason.rawValue)/\(index)"
                let value: [UInt8] =
                    switch reason {
                    case .malformedJSON: Array(#"{"type":"track","messageId":"#.utf8)
                    case .invalidUTF8: [0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x7D]
                    case .schemaViolation: Array(#"{"type":"track","messageId":42,"timestamp":"2026-11-25T05:00:00Z","userId":"u","event":"E"}"#.utf8)
                    case .tooLarge: Array(("{\"pad\":\"" + String(repeating: "x", count: 5000) + "\"}").utf8)
                    case .handlerFailure: fixture.event(shopper: 999, sequence: -1, id: "poison-\(index)").value
                    }
                expected[key] = reason
                messages.append(
                    KafkaOutboundMessage(topic: fixture.inputTopic, key: Array(key.utf8), value: value, headers: [KafkaHeader(key: "origin", text: "test")]))
            }
            var sourceOf: [String: KafkaDeliveryReport] = [:]
            for start in stride(from: 0, to: messages.count, by: 500) {
                let chunk = Array(messages[start..<min(start + 500, messages.count)])
                for (message, report) in zip(chunk, try await fixture.publish(chunk)) {
                    if let key = message.key { sourceOf[String(decoding: key, as: UTF8.self)] = report }
                }
            }
            #expect(expected.count == 1000)
            try await fixture.waitUntilConsumed()
            let dead = try await fixture.readToEnd(fixture.deadLetterTopic)
            #expect(dead.count == 1000)
            for message in dead {
                let key = String(decoding: message.key ?? [], as: UTF8.self)
                guard let reason = expected[key], let source = sourceOf[key] else {
                    Issue.record("unexpected dead letter \(key)")
                    continue
                }
                #expect(message.header("dlq.reason") == reason.rawValue, "\(key)")
                #expect(message.header("dlq.source.topic") == fixture.inputTopic)
                #expect(message.header("dlq.source.partition") == "\(source.topicPartition.partition)")
                #expect(message.header("dlq.source.offset") == "\(source.offset)")
                #expect(message.header("dlq.worker") == "EchoWorker")
                #expect(message.header("origin") == "test", "original headers kept")
                #expect(message.header("dlq.failed_at").flatMap(Date.init(rfc3339:)) != nil)
                #expect((message.header("dlq.message") ?? "").isEmpty == false)
                let original = messages.first { $0.key.map { String(decoding: $0, as: UTF8.self) } == key }
                #expect(Array(message.value) == original?.value, "original bytes kept")
            }
            #expect(try await fixture.effectCount() == good, "every good event applied")
            #expect(try await fixture.readToEnd(fixture.commandsTopic).count == good, "one command per good event")
            #expect(worker.isRunning, "the worker never restarted")
        }
    }

    /// `/metrics` counts what was sent; `/healthz` and `/readyz` answer.
    @Test func metricsCountWhatWasSent() async throws {
        try await TestEnvironment.withPipeline(3) { fixture in
            let (_, port) = try await fixture.startWorker()
            try await eventually("ready", timeout: .seconds(30)) { await probe(port, "/readyz")?.status == 200 }
            #expect(await probe(port, "/healthz")?.status == 200)
            let events = (0..<120).map { fixture.event(shopper: $0 % 7, sequence: $0) }
            let skipped = (0..<9).map { index in
                KafkaOutboundMessage(
                    topic: fixture.inputTopic, key: Array("\(fixture.store)/page".utf8),
                    value: Array(#"{"type":"page","messageId":"p\#(index)","timestamp":"2026-11-25T05:00:00Z","anonymousId":"a"}"#.utf8))
            }
            let bad = (0..<4).map { _ in KafkaOutboundMessage(topic: fixture.inputTopic, key: Array("\(fixture.store)/x".utf8), value: Array("nope".utf8)) }
            try await fixture.publish(events + Array(events.prefix(15)) + skipped + bad)
            func value(_ series: String) async -> Double { await metric(port, series) }
            let topic = "topic=\"\(fixture.inputTopic)\""
            try await eventually("all 148 messages counted", timeout: .seconds(60)) {
                let handled = await value("rapport_events_total{\(topic),type=\"track\",outcome=\"handled\"}")
                let duplicates = await value("rapport_events_total{\(topic),type=\"any\",outcome=\"duplicate\"}")
                let skippedCount = await value("rapport_events_total{\(topic),type=\"other\",outcome=\"skipped\"}")
                let deadLettered = await value("rapport_events_total{\(topic),type=\"any\",outcome=\"dead_lettered\"}")
                return handled == 120 && duplicates == 15 && skippedCount == 9 && deadLettered == 4
            }
            #expect(await value("rapport_commands_total{topic=\"\(fixture.commandsTopic)\",name=\"echo\"}") == 120)
            #expect(await value("rapport_dead_letters_total{\(topic),reason=\"malformed_json\"}") == 4)
            #expect(await value("rapport_batch_size_count{\(topic)}") >= 1)
            #expect(await probe(port, "/readyz")?.body.contains("\"not_in_backoff\":true") == true)
        }
    }

    /// SIGTERM mid-stream: exit 0 within the drain timeout; the next start resumes with nothing lost or doubled.
    @Test func sigtermMidStreamDrainsAndTheNextStartResumes() async throws {
        try await TestEnvironment.withPipeline(4) { fixture in
            let first = (0..<5000).map { fixture.event(shopper: $0 % 50, sequence: $0) }
            try await fixture.publish(first)
            fixture.extraEnvironment = ["BATCH_SIZE": "100"]
            let (worker, _) = try await fixture.startWorker()
            try await eventually("a good part applied", timeout: .seconds(60)) { try await fixture.effectCount() >= 500 }
            worker.send(SIGTERM)
            let stopping = ContinuousClock.now
            #expect(try await worker.waitForExit(timeout: .seconds(25)) == 0)
            #expect(ContinuousClock.now - stopping < .seconds(20))
            let applied = try await fixture.effectCount()
            #expect(applied < 5000, "stopped mid-stream (\(applied) applied)")

            try await fixture.publish((5000..<6000).map { fixture.event(shopper: $0 % 50, sequence: $0) })
            try await fixture.startWorker()
            try await fixture.waitUntilConsumed()
            #expect(try await fixture.effectCount() == 6000)
            let commands = try await fixture.readToEnd(fixture.commandsTopic)
            #expect(Set(commands.map(commandID)).count == 6000)
            #expect(try duplicatesDifferInContent(commands) == 0)
            #expect(try await fixture.readToEnd(fixture.deadLetterTopic).isEmpty)
        }
    }
}

/// The `command_id` of an echoed command.
func commandID(_ message: KafkaMessage) -> String {
    struct Command: Decodable {
        let commandID: String
        enum CodingKeys: String, CodingKey { case commandID = "command_id" }
    }
    return (try? JSONDecoder().decode(Command.self, from: Data(message.value)).commandID) ?? ""
}

/// How many command ids were seen twice with different content (must be none; identical repeats are allowed).
func duplicatesDifferInContent(_ messages: [KafkaMessage]) throws -> Int {
    var seen: [String: ArraySlice<UInt8>] = [:]
    var differing = 0
    for message in messages {
        let id = commandID(message)
        if let earlier = seen[id], earlier != message.value { differing += 1 }
        seen[id] = message.value
    }
    return differing
}
