/// The Kafka topic names of the contract, each configurable by its own variable.
public struct Topics: Sendable, Equatable {
    /// Storefront and email-feedback events, read by CaptureWorker. Default: `shopper-events`.
    public var shopperEvents = "shopper-events"
    /// Checkout events, read by ReceiptWorker. Default: `checkout-events`.
    public var checkoutEvents = "checkout-events"
    /// Survey submissions, read by SurveyWorker. Default: `survey-events`.
    public var surveyEvents = "survey-events"
    /// Commands for the email-sending service. Default: `email-commands`.
    public var emailCommands = "email-commands"
    /// Commands for the recommendation service. Default: `recommendation-commands`.
    public var recommendationCommands = "recommendation-commands"

    /// Every default.
    public init() {}

    /// The dead-letter topic of an input topic: `<input>-dlq`.
    public static func deadLetter(of topic: String) -> String { topic + "-dlq" }
}

extension Topics {
    /// The variable that renames each topic.
    public static var variables: [(name: String, keyPath: WritableKeyPath<Topics, String>)] {
        [
            ("SHOPPER_EVENTS_TOPIC", \.shopperEvents),
            ("CHECKOUT_EVENTS_TOPIC", \.checkoutEvents),
            ("SURVEY_EVENTS_TOPIC", \.surveyEvents),
            ("EMAIL_COMMANDS_TOPIC", \.emailCommands),
            ("RECOMMENDATION_COMMANDS_TOPIC", \.recommendationCommands),
        ]
    }

    /// Reads `SHOPPER_EVENTS_TOPIC`, `CHECKOUT_EVENTS_TOPIC`, `SURVEY_EVENTS_TOPIC`, `EMAIL_COMMANDS_TOPIC`,
    /// `RECOMMENDATION_COMMANDS_TOPIC`.
    /// - Throws: ``ConfigurationError`` when a name is empty or not a legal Kafka topic name.
    public init(environment: Environment) throws {
        self.init()
        for (variable, keyPath) in Self.variables {
            let name = try environment.string(variable, default: self[keyPath: keyPath])
            let legal = name.count <= 249 && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
            guard legal, name != ".", name != ".." else {
                throw ConfigurationError(variable, "not a legal Kafka topic name (letters, digits, '.', '_', '-'; at most 249)")
            }
            self[keyPath: keyPath] = name
        }
    }
}
