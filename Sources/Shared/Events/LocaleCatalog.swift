import Foundation

/// The locales, time zones and currencies Foundation knows: what an event names is checked against these sets, read
/// once, so that a message cannot make the worker build (and cache) a `Locale` for any string it likes.
public enum LocaleCatalog {
    /// Foundation's locale identifiers, lowercased, with `-` as the separator (`en-us`, `de`, `zh-hant-tw`).
    private static let locales: Set<String> = Set(Locale.availableIdentifiers.map(canonical))
    private static let timeZones: Set<String> = Set(TimeZone.knownTimeZoneIdentifiers).union(["UTC", "GMT"])
    private static let currencies: Set<String> = Set(Locale.Currency.isoCurrencies.map(\.identifier))

    /// Whether Foundation knows the locale `identifier` (`en-US`, `en_US`, `de`).
    public static func isKnown(locale identifier: String) -> Bool {
        identifier.utf8.count <= 64 && locales.contains(canonical(identifier))
    }

    /// Whether Foundation knows the IANA time zone `identifier` (`Europe/Paris`).
    public static func isKnown(timeZone identifier: String) -> Bool {
        identifier.utf8.count <= 64 && timeZones.contains(identifier)
    }

    /// Whether `code` is an ISO 4217 currency code Foundation knows (upper case: `EUR`).
    public static func isKnown(currency code: String) -> Bool {
        code.utf8.count == 3 && currencies.contains(code)
    }

    private static func canonical(_ identifier: String) -> String {
        identifier.lowercased().replacingOccurrences(of: "_", with: "-")
    }
}
