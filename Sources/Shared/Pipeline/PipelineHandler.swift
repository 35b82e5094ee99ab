/// A valid event a worker handles: the Segment message, the worker's own reading of it (decoded once, by
/// ``PipelineHandler/decode(_:)``), and where it was read.
public struct InboundEvent<Event: Sendable>: Sendable {
    /// The decoded Segment message.
    public var message: SegmentMessage
    /// What the worker made of it.
    public var event: Event
    /// The Kafka message it came from (its bytes, for a dead letter; its partition, for the outbox).
    public var source: KafkaMessage

    public init(message: SegmentMessage, event: Event, source: KafkaMessage) {
        self.message = message
        self.event = event
        self.source = source
    }

    /// `command` as caused by this event: it carries the position of the message the event came from.
    public func caused(_ command: OutboundCommand) -> OutboundCommand { command.caused(by: source.position) }
}

/// A command to publish once the batch that caused it has committed.
public struct OutboundCommand: Sendable, Equatable {
    /// The topic it goes to (`email-commands`, `recommendation-commands`).
    public var topic: String
    /// The Kafka key: the shopper key, so that one shopper's commands stay in order.
    public var key: String
    /// Its deterministic `command_id` (see ``CommandID``).
    public var id: String
    /// What kind of command it is (a template, a recommendation context), for metrics.
    public var name: String
    /// The store it belongs to.
    public var storeID: String
    /// The `messageId` of the event that caused it (or the scheduled step's id).
    public var causationID: String
    /// The JSON document.
    public var value: [UInt8]
    /// Where the input message that caused it was read; `nil` for a command no input message caused (a scheduled
    /// step's). The pipeline files the command's outbox row under that partition, so that after a crash the
    /// partition's next owner relays it before it processes anything newer from the same shopper. A handler sets it
    /// with ``InboundEvent/caused(_:)``.
    public var source: MessagePosition?

    /// The Kafka message it is published as: keyed by the shopper, `content-type: application/json`.
    public var outbound: KafkaOutboundMessage {
        KafkaOutboundMessage(topic: topic, key: Array(key.utf8), value: value, headers: [KafkaHeader(key: "content-type", text: "application/json")])
    }

    /// A command named `name`, caused by `causationID` in `storeID`; its id is ``CommandID/make(store:causation:name:)``
    /// of those three, so the JSON in `value` should carry that same id as `command_id`.
    public init(topic: String, key: String, name: String, storeID: String, causationID: String, value: [UInt8]) {
        self.topic = topic
        self.key = key
        self.id = CommandID.make(store: storeID, causation: causationID, name: name)
        self.name = name
        self.storeID = storeID
        self.causationID = causationID
        self.value = value
        self.source = nil
    }

    /// This command as caused by the message at `position`.
    public func caused(by position: MessagePosition) -> OutboundCommand {
        var command = self
        command.source = position
        return command
    }
}

/// A worker's behaviour: what a batch of new events changes in PostgreSQL, and which commands it causes.
///
/// The pipeline calls it inside the batch's transaction, after de-duplication: every event is valid, has not been
/// applied before, and comes in partition order. Write with set-based statements (arrays, `unnest`) rather than a
/// statement per event: the batch is the unit of cost.
public protocol PipelineHandler: Sendable {
    /// The worker's own reading of an event (CaptureWorker's `CaptureEvent`); the Segment message itself by default.
    associatedtype Event: Sendable = SegmentMessage

    /// Applies `events` through `connection` (inside the batch's transaction) and returns the commands they cause,
    /// in order, each marked with the event that caused it (``InboundEvent/caused(_:)``).
    ///
    /// - Throws: To fail the batch. A retriable ``PostgresError`` has the batch retried after a backoff; any other
    ///   error has the events applied one at a time, so that the one that keeps failing goes to the dead-letter topic
    ///   (`handler_failure`) while the others commit.
    func handle(_ events: [InboundEvent<Event>], connection: PostgresConnection) throws -> [OutboundCommand]

    /// Reads what the Segment Spec leaves to the worker (an event's required properties, their types) into its own
    /// type, once, for each decoded message before the batch's transaction. A message it refuses goes to the
    /// dead-letter topic with the failure's reason (normally `schema_violation`) and is never handled.
    func decode(_ message: SegmentMessage) throws(DecodeFailure) -> Event
}

extension PipelineHandler where Event == SegmentMessage {
    /// Accepts every Segment message as it is.
    public func decode(_ message: SegmentMessage) throws(DecodeFailure) -> SegmentMessage { message }
}

/// A handler whose event type the pipeline does not need to know: events travel through the batch as
/// `InboundEvent<any Sendable>` and become the handler's own type again as it receives them.
struct ErasedHandler: Sendable {
    let decode: @Sendable (SegmentMessage) throws(DecodeFailure) -> any Sendable
    let handle: @Sendable ([InboundEvent<any Sendable>], PostgresConnection) throws -> [OutboundCommand]

    init<Handler: PipelineHandler>(_ handler: Handler) {
        decode = { message throws(DecodeFailure) in try handler.decode(message) }
        handle = { events, connection in
            try handler.handle(
                events.map { event in
                    // Always the handler's own type: `decode` made it.
                    guard let typed = event.event as? Handler.Event else {
                        throw PostgresError(code: .unexpected, message: "an event of type \(type(of: event.event)) reached a \(Handler.self)")
                    }
                    return InboundEvent(message: event.message, event: typed, source: event.source)
                }, connection: connection)
        }
    }
}
