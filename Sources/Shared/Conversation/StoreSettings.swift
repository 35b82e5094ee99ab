import Foundation

/// What a store tells Rapport about itself and how it wants to converse: brand content for the messages, consent
/// rules, contact pressure, quiet hours and journey timings. Read from the settings file (`STORE_SETTINGS_FILE`);
/// a store the file does not name gets the file's `defaults`, and a setting neither names gets the built-in default.
public struct StoreSettings: Sendable, Equatable {
    /// A named link (a social profile, an event, the loyalty programme).
    public struct Link: Sendable, Equatable {
        public var name: String
        public var url: String
    }

    /// At most `count` marketing emails per shopper in any `window`.
    public struct PressureCap: Sendable, Equatable {
        public var count: Int
        public var window: Duration
    }

    /// A daily span, in minutes after midnight, that may wrap past midnight (21:00–08:00).
    public struct QuietHours: Sendable, Equatable {
        public var start: Int
        public var end: Int

        /// Whether `minute` (after midnight) falls inside.
        public func contains(minuteOfDay minute: Int) -> Bool {
            start <= end ? (start..<end).contains(minute) : (minute >= start || minute < end)
        }
    }

    /// Delays of the orientation journey after a first order.
    public struct JourneyTimings: Sendable, Equatable {
        public var thankYou: Duration = .seconds(2 * 3600)
        public var surveyInvite: Duration = .seconds(3 * 86_400)
        public var whyWeExist: Duration = .seconds(7 * 86_400)
        public var nextSale: Duration = .seconds(21 * 86_400)
        public var walkWithMe: Duration = .seconds(30 * 86_400)
    }

    public var senderName = "Rapport Store"
    public var senderEmail = "hello@example.com"
    public var postalAddress = ""
    public var brandStory = ""
    public var socialLinks: [Link] = []
    public var eventLinks: [Link] = []
    public var loyaltyProgramme: Link?
    /// Marketing waits for `Email Confirmed` after a single opt-in. Default: off.
    public var doubleOptIn = false
    /// An email-first checkout counts as marketing consent (soft opt-in, where the law allows it). Default: off.
    public var softOptIn = false
    /// Default: 1 per 24 h and 3 per 7 days.
    public var pressureCaps = [PressureCap(count: 1, window: .seconds(86_400)), PressureCap(count: 3, window: .seconds(7 * 86_400))]
    /// Scheduled marketing waits these hours out, in the shopper's zone. Default: 21:00–08:00.
    public var quietHours = QuietHours(start: 21 * 60, end: 8 * 60)
    /// The zone used when the shopper's is unknown. Default: UTC.
    public var timeZone = "UTC"
    /// The locale of messages when the shopper's is unknown. Default: en-US.
    public var locale = "en-US"
    /// At most one browse recommendation per shopper in this window. Default: 24 h.
    public var browseRecommendationWindow: Duration = .seconds(86_400)
    /// After erasure, keep a salted hash of the address so that it is not imported again. Default: off.
    public var keepErasureHash = false
    public var journey = JourneyTimings()
    /// When a customer's churn risk calls for a win-back, and what it offers.
    public struct WinBack: Sendable, Equatable {
        /// The band from which a customer who is overdue gets a win-back.
        public var band: RiskBand = .high
        /// An offer code the win-back carries, if the store gives one.
        public var offerCode: String?

        public init(band: RiskBand = .high, offerCode: String? = nil) {
            self.band = band
            self.offerCode = offerCode
        }
    }

    /// Default: from band `high`, no offer code; `null` in the file turns win-backs off.
    public var winBack: WinBack? = WinBack()
    /// Thank the shopper by email for a survey. Default: off.
    public var surveyAcknowledgement = false
    /// An event older than this when it is processed changes state but starts no conversation (history is not a
    /// conversation). Default: 72 h.
    public var staleAfter: Duration = .seconds(72 * 3600)
    /// Who signs the thank-you ("Mia, founder"). Default: the sender's name.
    public var signature: String?
    /// Where the survey invitation leads. Default: none (the invitation is not sent).
    public var surveyURL: String?

    /// The built-in defaults.
    public init() {}
}

/// Every store's settings: the file's `stores`, each over the file's `defaults`, over the built-in defaults.
public struct StoreDirectory: Sendable {
    /// What becomes of an event of a store the settings file does not name (`unknown_stores`).
    public enum UnknownStores: String, Sendable {
        /// It gets the defaults, as every store does without a settings file (development, one-store installs).
        case defaults
        /// It is dead-lettered (`schema_violation`): nobody can invent a store that mails with the default sender.
        /// The default of a settings file.
        case deadLetter = "dead_letter"
    }

    /// What a store the file does not name gets.
    public let defaults: StoreSettings
    private let stores: [String: StoreSettings]
    /// What becomes of events of stores the file does not name. Default: ``UnknownStores/deadLetter`` with a
    /// settings file, ``UnknownStores/defaults`` without one.
    public let unknownStores: UnknownStores

    /// The built-in defaults for every store.
    public init() {
        defaults = StoreSettings()
        stores = [:]
        unknownStores = .defaults
    }

    /// Whether events of `store` are processed: it is named in the settings file, or unknown stores get the defaults.
    public func accepts(_ store: String) -> Bool {
        unknownStores == .defaults || stores[store] != nil
    }

    /// `store` as a metric label: stores the settings file names, every other as `other`, so that the values a
    /// label takes stay as few as the stores an operator configured, whatever events name.
    public func metricLabel(for store: String) -> String {
        stores[store] != nil ? store : "other"
    }

    /// The settings of `store`.
    public func settings(for store: String) -> StoreSettings {
        stores[store] ?? defaults
    }

    /// The stores the file names.
    public var knownStores: [String] { stores.keys.sorted() }

    /// The defaults, then every named store's settings.
    public var allSettings: [StoreSettings] { [defaults] + knownStores.map(settings(for:)) }

    /// Reads the settings file (JSON):
    /// ```json
    /// {"defaults": {"double_opt_in": false, "quiet_hours": {"start": "21:00", "end": "08:00"}},
    ///  "stores": {"acme": {"sender": {"name": "Acme", "email": "hi@acme.test"}, "double_opt_in": true}}}
    /// ```
    /// - Throws: ``ConfigurationError`` naming `setting` (the variable that named the file) and the offending key.
    public init(json bytes: [UInt8], setting: String) throws {
        func fail(_ problem: String) -> ConfigurationError { ConfigurationError(setting, problem) }
        let root: [String: JSONValue]
        do {
            guard let object = try JSONValue.parse(bytes[...]).objectValue else { throw fail("the settings file must hold a JSON object") }
            root = object
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw fail("the settings file is not valid JSON")
        }
        if let unknown = Set(root.keys).subtracting(["defaults", "stores", "unknown_stores"]).sorted().first {
            throw fail("unknown key \(unknown) (expected defaults, stores, unknown_stores)")
        }
        if let value = root["unknown_stores"] {
            guard let text = value.stringValue, let choice = UnknownStores(rawValue: text) else {
                throw fail("unknown_stores must be \"defaults\" or \"dead_letter\"")
            }
            unknownStores = choice
        } else {
            unknownStores = .deadLetter
        }
        var defaults = StoreSettings()
        if let value = root["defaults"] {
            guard let object = value.objectValue else { throw fail("defaults must be an object") }
            try defaults.apply(object, path: "defaults", setting: setting)
        }
        var stores: [String: StoreSettings] = [:]
        if let value = root["stores"] {
            guard let object = value.objectValue else { throw fail("stores must be an object") }
            for (store, overrides) in object {
                guard let overrides = overrides.objectValue else { throw fail("stores.\(store) must be an object") }
                var settings = defaults
                try settings.apply(overrides, path: "stores.\(store)", setting: setting)
                stores[store] = settings
            }
        }
        self.defaults = defaults
        self.stores = stores
    }

    /// The settings in the file whose path `STORE_SETTINGS_FILE` holds; the built-in defaults when it is unset.
    /// - Throws: ``ConfigurationError`` naming `STORE_SETTINGS_FILE`.
    public init(environment: Environment) throws {
        let setting = "STORE_SETTINGS_FILE"
        guard let path = try environment.string(setting), !path.isEmpty else {
            self.init()
            return
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(setting, "cannot read \(path)")
        }
        try self.init(json: Array(data), setting: setting)
    }
}

extension StoreSettings {
    /// Overrides the settings `object` names, refusing unknown keys and wrong types with the key's path.
    mutating func apply(_ object: [String: JSONValue], path: String, setting: String) throws {
        func fail(_ key: String, _ problem: String) -> ConfigurationError { ConfigurationError(setting, "\(path).\(key) \(problem)") }
        func string(_ key: String, _ value: JSONValue) throws -> String {
            guard let text = value.stringValue else { throw fail(key, "must be a string") }
            return text
        }
        func bool(_ key: String, _ value: JSONValue) throws -> Bool {
            guard let flag = value.boolValue else { throw fail(key, "must be true or false") }
            return flag
        }
        func number(_ key: String, _ value: JSONValue, in range: ClosedRange<Double>) throws -> Double {
            guard let number = value.numberValue, range.contains(number) else { throw fail(key, "must be a number in \(range)") }
            return number
        }
        func link(_ key: String, _ value: JSONValue) throws -> Link {
            guard let object = value.objectValue, let name = object["name"]?.stringValue, let url = object["url"]?.stringValue,
                object.count == 2
            else { throw fail(key, "must be {\"name\": string, \"url\": string}") }
            return Link(name: name, url: url)
        }
        func links(_ key: String, _ value: JSONValue) throws -> [Link] {
            guard let array = value.arrayValue else { throw fail(key, "must be an array of links") }
            return try array.map { try link(key, $0) }
        }
        func clock(_ key: String, _ value: JSONValue) throws -> Int {
            let parts = try string(key, value).split(separator: ":")
            guard parts.count == 2, let hour = Int(parts[0]), let minute = Int(parts[1]), (0..<24).contains(hour), (0..<60).contains(minute)
            else { throw fail(key, "must be a time of day, HH:MM") }
            return hour * 60 + minute
        }
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "sender":
                guard let sender = value.objectValue, let name = sender["name"]?.stringValue, let email = sender["email"]?.stringValue,
                    sender.count == 2
                else { throw fail(key, "must be {\"name\": string, \"email\": string}") }
                guard EmailAddress(email) != nil else { throw fail(key, "has an invalid email") }
                (senderName, senderEmail) = (name, email)
            case "postal_address": postalAddress = try string(key, value)
            case "brand_story": brandStory = try string(key, value)
            case "social_links": socialLinks = try links(key, value)
            case "event_links": eventLinks = try links(key, value)
            case "loyalty_programme": loyaltyProgramme = value == .null ? nil : try link(key, value)
            case "double_opt_in": doubleOptIn = try bool(key, value)
            case "soft_opt_in": softOptIn = try bool(key, value)
            case "pressure":
                guard let caps = value.arrayValue else { throw fail(key, "must be an array of {\"max\": n, \"hours\": h}") }
                pressureCaps = try caps.map { cap in
                    guard let cap = cap.objectValue, let max = cap["max"]?.numberValue, let hours = cap["hours"]?.numberValue,
                        cap.count == 2, max >= 0, max == max.rounded(), hours > 0, hours <= 24 * 366
                    else { throw fail(key, "must be an array of {\"max\": n, \"hours\": h}") }
                    return PressureCap(count: Int(max), window: .seconds(hours * 3600))
                }
            case "quiet_hours":
                if value == .null {
                    quietHours = QuietHours(start: 0, end: 0)
                    continue
                }
                guard let span = value.objectValue, let start = span["start"], let end = span["end"], span.count == 2 else {
                    throw fail(key, "must be {\"start\": \"HH:MM\", \"end\": \"HH:MM\"} or null")
                }
                quietHours = QuietHours(start: try clock(key + ".start", start), end: try clock(key + ".end", end))
            case "time_zone":
                let zone = try string(key, value)
                guard TimeZone(identifier: zone) != nil else { throw fail(key, "is not a time zone (e.g. Europe/Paris)") }
                timeZone = zone
            case "locale": locale = try string(key, value)
            case "browse_recommendation_window_hours":
                browseRecommendationWindow = .seconds(try number(key, value, in: 0...(24 * 366)) * 3600)
            case "keep_erasure_hash": keepErasureHash = try bool(key, value)
            case "stale_after_hours": staleAfter = .seconds(try number(key, value, in: 0...(24 * 366 * 100)) * 3600)
            case "signature": signature = value == .null ? nil : try string(key, value)
            case "survey_url": surveyURL = value == .null ? nil : try string(key, value)
            case "win_back":
                switch value {
                case .null: winBack = nil
                case .string(let band):
                    guard let band = RiskBand(rawValue: band) else { throw fail(key, "must be a band (low, medium, high), an object or null") }
                    winBack = WinBack(band: band)
                case .object(let object):
                    var rule = WinBack()
                    for (name, field) in object {
                        switch (name, field) {
                        case ("band", .string(let text)):
                            guard let band = RiskBand(rawValue: text) else { throw fail("win_back.band", "must be low, medium or high") }
                            rule.band = band
                        case ("offer_code", .string(let code)): rule.offerCode = code
                        case ("offer_code", .null): rule.offerCode = nil
                        case ("band", _), ("offer_code", _): throw fail("win_back.\(name)", "must be a string")
                        default: throw fail("win_back.\(name)", "is not a win-back setting (band, offer_code)")
                        }
                    }
                    winBack = rule
                default:
                    throw fail(key, "must be a band (low, medium, high), {\"band\", \"offer_code\"} or null")
                }
            case "survey_acknowledgement": surveyAcknowledgement = try bool(key, value)
            case "journey":
                guard let timings = value.objectValue else { throw fail(key, "must be an object") }
                for (name, delay) in timings {
                    let hours = Duration.seconds(try number("journey.\(name)", delay, in: 0...(24 * 366)) * 3600)
                    switch name {
                    case "thank_you_hours": journey.thankYou = hours
                    case "survey_invite_hours": journey.surveyInvite = hours
                    case "why_we_exist_hours": journey.whyWeExist = hours
                    case "next_sale_hours": journey.nextSale = hours
                    case "walk_with_me_hours": journey.walkWithMe = hours
                    default: throw fail("journey.\(name)", "is not a journey timing")
                    }
                }
            default:
                throw fail(key, "is not a store setting")
            }
        }
    }
}
