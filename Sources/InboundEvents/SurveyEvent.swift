import Foundation
import Shared

/// A `survey-events` message as SurveyWorker understands it: a `Survey Submitted` checked against the contract's
/// answer types, or other traffic.
package struct SurveyEvent: Sendable, Equatable {
    package enum Action: Sendable, Equatable {
        case submitted(Submission)
        /// Any other event on the topic: normal traffic, skipped and counted.
        case other(String)
    }

    /// One submission, as given.
    package struct Submission: Sendable, Equatable {
        package var surveyID: String
        /// Every answer, exactly as submitted (the stored response).
        package var answers: [String: JSONValue]
        /// The address the survey was answered from (`properties.email`, else `context.traits.email`), if any.
        package var email: EmailAddress?
    }

    package var message: SegmentMessage
    package var action: Action

    /// The identities that resolve the respondent to the shared shopper.
    package var identities: [ShopperIdentity] {
        let email: EmailAddress? = if case .submitted(let submission) = action { submission.email } else { nil }
        return ShopperIdentity.carried(by: message, email: email)
    }

    /// Reads `message`.
    /// - Throws: ``DecodeFailure`` (`schema_violation`) naming the field that is missing or of the wrong type.
    package init(_ message: SegmentMessage) throws(DecodeFailure) {
        self.message = message
        guard message.kind == .track, message.event == "Survey Submitted" else {
            action = .other(message.event ?? message.kind.rawValue)
            return
        }
        let properties = message.properties
        guard let surveyID = try EventFields.identifier("survey_id", in: properties, path: "properties.survey_id"), !surveyID.isEmpty else {
            throw DecodeFailure(.schemaViolation, "properties.survey_id is required")
        }
        guard let value = properties["answers"] else { throw DecodeFailure(.schemaViolation, "properties.answers is required") }
        guard let answers = value.objectValue else {
            throw DecodeFailure(.schemaViolation, "properties.answers must be an object, not \(value.typeNameWithArticle)")
        }
        _ = try Profile.Answers(answers)
        let traits = message.context["traits"]?.objectValue ?? [:]
        let propertyEmail = try EventFields.string("email", in: properties, path: "properties.email")
        let contextEmail = try EventFields.string("email", in: traits, path: "context.traits.email")
        let email = try EventFields.address(
            propertyEmail ?? contextEmail, path: propertyEmail != nil ? "properties.email" : "context.traits.email", required: false)
        action = .submitted(Submission(surveyID: surveyID, answers: answers, email: email))
    }
}

/// What a shopper's responses say about them: interests (categories), habits, income band, preferred channels, and
/// every other answer. A later response overrides an earlier one key by key (habits key by key too); a key a later
/// response does not give keeps its earlier answer.
package struct Profile: Sendable, Equatable {
    /// One response's answers, typed as the contract says.
    package struct Answers: Sendable, Equatable {
        package var interests: [String]?
        package var habits: [String: String]?
        package var incomeBand: String?
        package var channels: [String]?
        /// The keys the contract does not name, as given.
        package var other: [String: JSONValue] = [:]

        /// The keys the contract names.
        package static let named: Set<String> = ["interests", "habits", "income_band", "channels"]
        /// The most keys in `answers`, and the most elements of `interests`, `channels` or `habits`: a survey is a
        /// form a person fills in, and a stored response is read again for every later one.
        package static let maximumEntries = 100

        /// Reads `answers`; `null` counts as not answered.
        /// - Throws: ``DecodeFailure`` (`schema_violation`) naming the answer of the wrong type.
        package init(_ answers: [String: JSONValue]) throws(DecodeFailure) {
            guard answers.count <= Self.maximumEntries else {
                throw DecodeFailure(.schemaViolation, "properties.answers must have at most \(Self.maximumEntries) keys, not \(answers.count)")
            }
            func strings(_ key: String) throws(DecodeFailure) -> [String]? {
                guard let array = try EventFields.array(key, in: answers, path: "properties.answers.\(key)", limit: Self.maximumEntries) else { return nil }
                var result: [String] = []
                for (index, element) in array.enumerated() {
                    guard let text = element.stringValue else {
                        throw DecodeFailure(.schemaViolation, "properties.answers.\(key)[\(index)] must be a string, not \(element.typeNameWithArticle)")
                    }
                    let trimmed = try EventFields.identifier(text.trimmingCharacters(in: .whitespaces), path: "properties.answers.\(key)[\(index)]")
                    if !trimmed.isEmpty { result.append(trimmed) }
                }
                // Repeats removed in linear time: a list of 100,000 distinct strings once took minutes by `contains`.
                return result.uniqued()
            }
            interests = try strings("interests")
            channels = try strings("channels")?.map { $0.lowercased() }.uniqued()
            if let value = answers["habits"], value != .null {
                guard let object = value.objectValue else {
                    throw DecodeFailure(.schemaViolation, "properties.answers.habits must be an object of strings, not \(value.typeNameWithArticle)")
                }
                guard object.count <= Self.maximumEntries else {
                    throw DecodeFailure(.schemaViolation, "properties.answers.habits must have at most \(Self.maximumEntries) keys, not \(object.count)")
                }
                var habits: [String: String] = [:]
                for (key, answer) in object {
                    guard let text = answer.stringValue else {
                        throw DecodeFailure(.schemaViolation, "properties.answers.habits.\(key) must be a string, not \(answer.typeNameWithArticle)")
                    }
                    habits[key] = text
                }
                self.habits = habits
            }
            if let value = answers["income_band"], value != .null {
                guard let text = value.stringValue else {
                    throw DecodeFailure(.schemaViolation, "properties.answers.income_band must be a string, not \(value.typeNameWithArticle)")
                }
                incomeBand = text
            }
            other = answers.filter { !Self.named.contains($0.key) }
        }
    }

    package var interests: [String]?
    package var habits: [String: String] = [:]
    package var incomeBand: String?
    package var channels: [String]?
    package var other: [String: JSONValue] = [:]

    /// The profile of `responses`, oldest first.
    package init(_ responses: [Answers]) {
        for answers in responses { apply(answers) }
    }

    /// `answers` over this profile, key by key.
    package mutating func apply(_ answers: Answers) {
        if let interests = answers.interests { self.interests = interests }
        if let habits = answers.habits { self.habits.merge(habits) { _, new in new } }
        if let band = answers.incomeBand { incomeBand = band }
        if let channels = answers.channels { self.channels = channels }
        other.merge(answers.other) { _, new in new }
    }
}
