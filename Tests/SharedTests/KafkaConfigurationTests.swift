import Testing

@testable import Shared

@Suite struct KafkaConfigurationTests {
    @Test func passesEveryKafkaVariableThroughAsALibrdkafkaProperty() throws {
        let configuration = try KafkaConfiguration(
            environment: Environment([
                "KAFKA_BROKERS": "k1:9092, k2:9093",
                "KAFKA_GROUP_ID": "g",
                "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
                "KAFKA_SASL_MECHANISMS": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": "rapport",
                "KAFKA_SESSION_TIMEOUT_MS": "6000",
            ]),
            clientID: "test")
        #expect(configuration.bootstrapServers == ["k1:9092", "k2:9093"])
        #expect(
            configuration.properties == [
                "security.protocol": "sasl_ssl", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "rapport",
                "session.timeout.ms": "6000",
            ])
    }

    @Test func passedThroughPropertiesOverrideRapportsChoicesButNotIdempotence() {
        var kafka = KafkaConfiguration()
        kafka.properties = ["session.timeout.ms": "6000", "enable.idempotence": "false", "linger.ms": "1"]
        let consumer = KafkaConsumerConfiguration(kafka: kafka, groupID: "g").librdkafkaProperties
        #expect(consumer["session.timeout.ms"] == "6000")
        #expect(consumer["enable.auto.commit"] == "false")
        #expect(consumer["group.id"] == "g")
        let producer = KafkaProducerConfiguration(kafka: kafka).librdkafkaProperties
        #expect(producer["enable.idempotence"] == "true")
        #expect(producer["linger.ms"] == "1")
    }

    /// librdkafka logs a CONFWARN line at start for a consumer-only property given to a producer (and the reverse).
    @Test func passedThroughPropertiesGoOnlyToTheClientsTheyApplyTo() {
        var kafka = KafkaConfiguration()
        kafka.properties = ["session.timeout.ms": "6000", "linger.ms": "1", "security.protocol": "ssl", "auto.offset.reset": "latest"]
        let consumer = KafkaConsumerConfiguration(kafka: kafka, groupID: "g").librdkafkaProperties
        let producer = KafkaProducerConfiguration(kafka: kafka).librdkafkaProperties
        #expect(consumer["session.timeout.ms"] == "6000" && consumer["auto.offset.reset"] == "latest" && consumer["security.protocol"] == "ssl")
        #expect(consumer["linger.ms"] == nil)
        #expect(producer["linger.ms"] == "1" && producer["security.protocol"] == "ssl")
        #expect(producer["session.timeout.ms"] == nil && producer["auto.offset.reset"] == nil)
        #expect(PropertyScope.table.count > 100, "librdkafka's property table was read")
    }

    @Test(arguments: [
        (["KAFKA_BROKERS": ""], ConfigurationError("KAFKA_BROKERS", "must not be empty")),
        (["KAFKA_BROKERS": " , "], ConfigurationError("KAFKA_BROKERS", "must not be empty")),
        (["KAFKA_BROKERS": "kafka"], ConfigurationError("KAFKA_BROKERS", "expected host:port[,host:port…], got 'kafka'")),
        (["KAFKA_BROKERS": "kafka:99999"], ConfigurationError("KAFKA_BROKERS", "expected host:port[,host:port…], got 'kafka:99999'")),
        (["KAFKA_NO_SUCH_THING": "1"], ConfigurationError("KAFKA_NO_SUCH_THING", "librdkafka has no property 'no.such.thing'")),
    ])
    func refusesBadSettingsNamingTheVariable(variables: [String: String], expected: ConfigurationError) {
        #expect(throws: expected) { try KafkaConfiguration(environment: Environment(variables), clientID: "test") }
    }

    @Test func anInvalidPropertyValueNamesTheVariableAndTheProperty() {
        let error = #expect(throws: ConfigurationError.self) {
            try KafkaConfiguration(environment: Environment(["KAFKA_SESSION_TIMEOUT_MS": "soon"]), clientID: "test")
        }
        #expect(error?.setting == "KAFKA_SESSION_TIMEOUT_MS")
        #expect(error?.problem.contains("session.timeout.ms") == true)
    }

    @Test func millisecondsOfADuration() {
        #expect(Duration.seconds(45).milliseconds == 45_000)
        #expect(Duration.milliseconds(1500).milliseconds == 1500)
        #expect(Duration.microseconds(999).milliseconds == 0)
    }

    @Test func anUnflaggedTimeoutFromLibrdkafkaIsRetriableButNothingFatalIs() {
        #expect(KafkaError.isRetriable(.timedOut, flagged: false, fatal: false), "a seek that timed out waiting for the fetcher")
        #expect(!KafkaError.isRetriable(.timedOut, flagged: true, fatal: true))
        #expect(!KafkaError.isRetriable(.invalidArgument, flagged: false, fatal: false))
    }
}
