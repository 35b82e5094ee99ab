import Logging

extension WorkerConfiguration {
    /// Reads a worker's configuration from the environment (the contract's table, plus Rapport's own tuning
    /// variables). Every problem is reported with the variable's name.
    ///
    /// - Throws: ``ConfigurationError``.
    public init(descriptor: WorkerDescriptor, environment: Environment) throws {
        let kafka = try KafkaConfiguration(environment: environment, clientID: descriptor.name)
        let groupID = try environment.string("KAFKA_GROUP_ID", default: descriptor.defaultGroupID)
        self.init(
            consumer: KafkaConsumerConfiguration(kafka: kafka, groupID: groupID),
            producer: KafkaProducerConfiguration(kafka: kafka),
            postgres: try PostgresConfiguration(environment: environment, applicationName: descriptor.name),
            topics: try Topics(environment: environment),
            httpPort: try environment.integer("HTTP_PORT", default: descriptor.defaultHTTPPort, in: 0...65535)
        )
        (logFormat, logLevel) = try Self.logging(environment: environment)
        httpHost = try environment.string("HTTP_HOST", default: httpHost)
        drainTimeout = .seconds(try environment.integer("DRAIN_TIMEOUT_SECONDS", default: 20, in: 1...3600))
        livenessWindow = .seconds(try environment.integer("LIVENESS_WINDOW_SECONDS", default: 30, in: 1...3600))
        batchSize = try environment.integer("BATCH_SIZE", default: batchSize, in: 1...100_000)
        batchMaxBytes = try environment.integer("BATCH_MAX_BYTES", default: batchMaxBytes, in: (64 << 10)...(1 << 30))
        transactionsPerBatch = try environment.integer("BATCH_TRANSACTIONS", default: transactionsPerBatch, in: 1...32)
        batchWait = .milliseconds(try environment.integer("BATCH_WAIT_MS", default: 100, in: 1...60_000))
        maxMessageBytes = try environment.integer("MAX_MESSAGE_BYTES", default: maxMessageBytes, in: 1024...(64 << 20))
        try deriveProducerMessageLimit(environment: environment)
        maxAttempts = try environment.integer("HANDLER_MAX_ATTEMPTS", default: maxAttempts, in: 1...100)
        deduplicationWindow = .seconds(try environment.integer("DEDUPLICATION_WINDOW_DAYS", default: 30, in: 1...3650) * 86_400)
    }

    /// The producer's `message.max.bytes` by design: `MAX_MESSAGE_BYTES` plus ``DeadLetter/headerAllowance``, so that
    /// the dead letter of any message the worker accepts fits whole (original key and headers, the `dlq.*` headers);
    /// only a message over `MAX_MESSAGE_BYTES` (dead-lettered `too_large`) goes as a truncated copy.
    /// `KAFKA_MESSAGE_MAX_BYTES` may raise it, never lower it below that.
    /// - Throws: ``ConfigurationError`` naming `KAFKA_MESSAGE_MAX_BYTES` when it is lower.
    private mutating func deriveProducerMessageLimit(environment: Environment) throws {
        let needed = maxMessageBytes + DeadLetter.headerAllowance
        producer.messageMaxBytes = needed
        guard try environment.string("KAFKA_MESSAGE_MAX_BYTES") != nil else { return }
        let effective = producer.effectiveMessageMaxBytes
        guard effective >= needed else {
            throw ConfigurationError(
                "KAFKA_MESSAGE_MAX_BYTES",
                "must be at least MAX_MESSAGE_BYTES (\(maxMessageBytes)) + \(DeadLetter.headerAllowance) bytes for dead-letter headers = \(needed), "
                    + "got \(effective): the dead letter of an accepted message would not fit")
        }
    }

    /// Reads `LOG_FORMAT` (`json`, `text`) and `LOG_LEVEL` (`trace` … `critical`).
    /// - Throws: ``ConfigurationError`` naming the variable.
    public static func logging(environment: Environment) throws -> (LogFormat, Logger.Level) {
        let level = try environment.choice("LOG_LEVEL", default: "info", among: Logger.Level.allCases.map(\.rawValue))
        let format = try environment.choice("LOG_FORMAT", default: "json", among: ["json", "text"])
        return (LogFormat(rawValue: format) ?? .json, Logger.Level(rawValue: level) ?? .info)
    }
}
