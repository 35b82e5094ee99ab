import ArgumentParser
import Foundation
import Logging
import Shared

/// `rapport-tool demo play|summary`: the demo's storefront (a story file played to the input topics in its own time)
/// and its ending (once the workers have done everything the story caused, what they sent and decided not to send).
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Play a storefront story to the input topics; summarise what the workers made of it.",
        subcommands: [Play.self, Summary.self])
}

extension Demo {
    /// Plays a story: one JSON object per line, `{"at": seconds after the start, "topic": contract topic name,
    /// "label": what happens, "event": Segment message | "raw": bytes as text, "age": "400d"|"2h"|"30s", "key"}`.
    /// Each event's `timestamp` becomes the moment it is published less its `age` (an imported history is old);
    /// its key is CONTRACT.md's shopper key unless given.
    struct Play: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Publish a story's events at their moments, printing each.")

        @Argument(help: "The story (JSON lines).")
        var story: String

        @Option(help: "Play this many times faster (the story's moments divided by it).")
        var speed = 1.0

        func validate() throws {
            guard speed > 0 else { throw ValidationError("--speed must be above 0") }
        }

        func run() async throws {
            let environment = Environment()
            let topics = try Topics(environment: environment)
            let names = ["shopper-events": topics.shopperEvents, "checkout-events": topics.checkoutEvents, "survey-events": topics.surveyEvents]
            let lines = try Self.read(story)
            let producer = try KafkaProducer(
                configuration: KafkaProducerConfiguration(kafka: KafkaConfiguration(environment: environment, clientID: "rapport-demo")),
                logger: Logger(label: "rapport-demo"))
            let start = ContinuousClock.now
            let width = String(lines.count).count
            for (index, line) in lines.enumerated() {
                guard let topic = names[line.topic] else { throw ValidationError("line \(index + 1): no input topic \(line.topic)") }
                try await Task.sleep(until: start + .milliseconds(Int(line.at * 1000 / speed)), clock: .continuous)
                let message = KafkaOutboundMessage(topic: topic, key: line.key.map { Array($0.utf8) }, value: line.value(now: Date()))
                let report = try await producer.send([message])[0].get()
                let position = String(index + 1).leftPadded(to: width)
                say("  [\(position)/\(lines.count)] \(line.topic.padded(to: 15)) p\(report.topicPartition.partition)@\(report.offset)  \(line.label)")
            }
            try await producer.close()
        }

        /// One line of a story.
        struct Line {
            var at: Double
            var topic: String
            var label: String
            var key: String?
            var event: [String: JSONValue]?
            var raw: String?
            var age: TimeInterval

            /// The bytes to publish, the event's timestamp set to `now − age`.
            func value(now: Date) -> [UInt8] {
                guard var event else { return Array((raw ?? "").utf8) }
                event["timestamp"] = .string(now.addingTimeInterval(-age).rfc3339)
                return JSONValue.object(event).encoded()
            }
        }

        static func read(_ path: String) throws -> [Line] {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            return try text.split(separator: "\n").enumerated().map { number, text in
                func bad(_ why: String) -> ValidationError { ValidationError("\(path):\(number + 1): \(why)") }
                guard case .object(let object)? = try? JSONValue.parse(Array(text.utf8)[...]) else { throw bad("not a JSON object") }
                guard let topic = object["topic"]?.stringValue, let label = object["label"]?.stringValue else { throw bad("needs topic and label") }
                var event: [String: JSONValue]?
                if case .object(let body)? = object["event"] { event = body }
                guard event != nil || object["raw"]?.stringValue != nil else { throw bad("needs event or raw") }
                let age = try object["age"]?.stringValue.map { text in try duration(text).orThrow(bad("age must be like 400d, 2h, 30s")) } ?? 0
                var key = object["key"]?.stringValue
                if key == nil, let event {
                    // CONTRACT.md: storeId + "/" + (userId ?? anonymousId ?? lowercased email).
                    let store: String
                    if case .object(let context)? = event["context"] { store = context["storeId"]?.stringValue ?? "default" } else { store = "default" }
                    var email: String?
                    if case .object(let properties)? = event["properties"] { email = properties["email"]?.stringValue?.lowercased() }
                    if let who = event["userId"]?.stringValue ?? event["anonymousId"]?.stringValue ?? email { key = store + "/" + who }
                }
                return Line(
                    at: object["at"]?.numberValue ?? 0, topic: topic, label: label, key: key, event: event, raw: object["raw"]?.stringValue, age: age)
            }
        }

        /// `400d`, `2h`, `30m`, `30s` in seconds.
        static func duration(_ text: String) -> TimeInterval? {
            guard let unit = text.last, let number = Double(text.dropLast()) else { return nil }
            switch unit {
            case "d": return number * 86_400
            case "h": return number * 3600
            case "m": return number * 60
            case "s": return number
            default: return nil
            }
        }
    }
}

extension Demo {
    /// Waits until the workers have handled every message on the input topics, relayed their outboxes and decided
    /// every scheduled step due within `--horizon`; then prints the commands by template and context, the decisions
    /// not to send by reason (the policy's, and the steps' cancelled or dropped without one), and the dead letters.
    struct Summary: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Wait for the workers to finish what the story caused, then summarise it.")

        @Option(help: "The store.")
        var store = "acme"

        @Option(help: "Wait for scheduled steps due within this many seconds from now.")
        var horizon = 120

        @Option(help: "Give up after this many seconds.")
        var timeout = 300

        func run() async throws {
            let environment = Environment()
            let topics = try Topics(environment: environment)
            let inputs = [topics.shopperEvents, topics.checkoutEvents, topics.surveyEvents]
            let kafka = try KafkaConfiguration(environment: environment, clientID: "rapport-demo")
            var quiet = Logger(label: "rapport-demo")
            quiet.logLevel = .critical
            let postgres = PostgresClient(configuration: try PostgresConfiguration(environment: environment, applicationName: "rapport-demo"), logger: quiet)
            defer { postgres.close() }
            let reader = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: kafka, groupID: "rapport-demo-summary"), logger: quiet)
            var partitions: [TopicPartition] = []
            for topic in inputs { partitions += try await reader.partitions(of: topic) }
            let (store, horizon) = (self.store, self.horizon)
            let deadline = ContinuousClock.now + .seconds(timeout)
            var line = ""
            while true {
                let watermarks = try await reader.highWatermarks(for: partitions)
                let state = try await postgres.withConnection { connection in
                    var consumed: [TopicPartition: Int64] = [:]
                    for (topic, partition, next) in try connection.query(
                        "SELECT topic, partition, max(next_offset) FROM rapport_consumer_offsets GROUP BY 1, 2"
                    ).decode((String, Int32, Int64).self) {
                        consumed[TopicPartition(topic: topic, partition: partition)] = next
                    }
                    let outbox = try connection.query("SELECT count(*) FROM rapport_outbox WHERE parked_at IS NULL").first?.decode(Int.self) ?? 0
                    let due =
                        try connection.query(
                            """
                            SELECT count(*) FROM rapport_scheduled_steps
                            WHERE store_id = \(store) AND state = 'pending' AND due_at < now() + \(horizon)::int * interval '1 second'
                            """
                        ).first?.decode(Int.self) ?? 0
                    return (consumed, outbox, due)
                }
                let total = watermarks.values.reduce(0, +)
                let done = watermarks.reduce(Int64(0)) { $0 + min($1.value, state.0[$1.key] ?? 0) }
                line = "  waiting: \(done)/\(total) input messages handled, \(state.1) commands in the outbox, \(state.2) scheduled steps due"
                say(line)
                if done == total, state.1 == 0, state.2 == 0 { break }
                guard ContinuousClock.now < deadline else { throw ValidationError("not finished after \(timeout) s: \(line)") }
                try await Task.sleep(for: .seconds(2))
            }
            try await report(store: store, topics: topics, reader: reader, postgres: postgres)
            try await reader.close()
        }

        private func report(store: String, topics: Topics, reader: KafkaConsumer, postgres: PostgresClient) async throws {
            var templates: [String: Int] = [:]
            var contexts: [String: Int] = [:]
            for message in try await Self.readToEnd([topics.emailCommands, topics.recommendationCommands], reader: reader) {
                guard case .object(let command)? = try? JSONValue.parse(message.value), command["store_id"]?.stringValue == store else { continue }
                if command["type"]?.stringValue == "SendEmail" {
                    templates["\(command["template"]?.stringValue ?? "?") (\(command["category"]?.stringValue ?? "?"))", default: 0] += 1
                } else if command["type"]?.stringValue == "RecommendProducts" {
                    contexts[command["context"]?.stringValue ?? "?", default: 0] += 1
                }
            }
            var reasons: [String: Int] = [:]
            for message in try await Self.readToEnd(
                [topics.shopperEvents, topics.checkoutEvents, topics.surveyEvents].map(Topics.deadLetter(of:)), reader: reader)
            {
                reasons["\(message.topicPartition.topic): \(message.header("dlq.reason") ?? "?") — \(message.header("dlq.message") ?? "")", default: 0] += 1
            }
            let decisions = try await postgres.withConnection { connection in
                try connection.query(
                    """
                    SELECT decision || ': ' || reason, string_agg(DISTINCT template, ', ' ORDER BY template), count(*) FROM rapport_contact_decisions
                    WHERE store_id = \(store) AND decision <> 'sent' GROUP BY 1
                    UNION ALL
                    SELECT state || ': ' || reason, string_agg(DISTINCT template, ', ' ORDER BY template), count(*) FROM rapport_scheduled_steps s
                    WHERE store_id = \(store) AND state IN ('cancelled', 'dropped') AND NOT EXISTS (
                        SELECT 1 FROM rapport_contact_decisions d
                        WHERE d.store_id = s.store_id AND d.causation_id = s.causation_id AND d.template = s.template)
                    GROUP BY 1
                    ORDER BY 3 DESC, 1
                    """
                ).decode((String?, String, Int).self).map { decision, templates, count in (decision ?? "", templates, count) }
            }
            say("\n== summary for store \(store)")
            say("  email commands (\(templates.values.reduce(0, +))):")
            for (name, count) in templates.sorted(by: { ($1.value, $0.key) < ($0.value, $1.key) }) { say("    \(String(count).leftPadded(to: 4))  \(name)") }
            say("  recommendation commands (\(contexts.values.reduce(0, +))):")
            for (name, count) in contexts.sorted(by: { ($1.value, $0.key) < ($0.value, $1.key) }) { say("    \(String(count).leftPadded(to: 4))  \(name)") }
            say("  decisions not to send (\(decisions.reduce(0) { $0 + $1.2 })):")
            for (reason, templates, count) in decisions { say("    \(String(count).leftPadded(to: 4))  \(reason)  [\(templates)]") }
            say("  dead letters (\(reasons.values.reduce(0, +))):")
            for (reason, count) in reasons.sorted(by: { $0.key < $1.key }) { say("    \(String(count).leftPadded(to: 4))  \(reason)") }
        }

        /// Every message of `topics` up to their high watermarks as of now.
        static func readToEnd(_ topics: [String], reader: KafkaConsumer) async throws -> [KafkaMessage] {
            var partitions: [TopicPartition] = []
            for topic in topics { partitions += try await reader.partitions(of: topic) }
            return try await reader.readToEnd(partitions)
        }
    }
}

/// A line on stdout at once (the demo's output is read as it happens, through a pipe too).
private func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

extension String {
    fileprivate func padded(to width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
    fileprivate func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

extension Optional {
    fileprivate func orThrow(_ error: some Error) throws -> Wrapped {
        guard let self else { throw error }
        return self
    }
}
