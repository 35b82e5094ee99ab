import Foundation
import Shared
import Testing

/// The workers' timeline functions (`*_shopper_timeline`) format money and moments in SQL; these hold the SQL to the
/// Swift that writes the same values everywhere else (`Money.text`, `Date.rfc3339`).
@Suite struct TimelineFormatParityTests {
    @Test func moneyTextInSQLIsMoneyTextForEveryCurrencyExponent() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 1)
            defer { postgres.close() }
            _ = try await Migrator(client: postgres, logger: TestEnvironment.logger).migrate(try Migration.shared())
            let currencies = Money.exponents.keys.sorted() + ["EUR", "USD", "XXX"]
            let amounts: [Int64] = [0, 1, -1, 5, -5, 99, 100, 1_250, -1_250, 123_456_789, Money.maximumMinorUnits, -Money.maximumMinorUnits]
            let cases = currencies.flatMap { currency in amounts.map { (currency, $0) } }
            let inSQL = try await postgres.withConnection { connection in
                try connection.query(
                    """
                    SELECT rapport_money_text(u.minor_units, u.currency)
                    FROM unnest(\(PostgresArray(cases.map(\.1)))::bigint[], \(PostgresArray(cases.map(\.0)))::text[]) WITH ORDINALITY AS u(minor_units, currency, n)
                    ORDER BY u.n
                    """
                ).decode(String.self)
            }
            let inSwift = cases.map { Money(minorUnits: $1, currency: $0).text }
            #expect(inSQL.count == cases.count)
            for (index, (sql, swift)) in zip(inSQL, inSwift).enumerated() where sql != swift {
                Issue.record("\(cases[index].0) \(cases[index].1): SQL \(sql), Swift \(swift)")
            }
        }
    }

    @Test func rfc3339InSQLIsDateRFC3339ToTheMillisecond() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 1)
            defer { postgres.close() }
            _ = try await Migrator(client: postgres, logger: TestEnvironment.logger).migrate(try Migration.shared())
            // Whole microseconds (what timestamptz keeps) a microsecond either side of a half millisecond, and the end
            // of a second. (At a half millisecond exactly, the `Date` read from the column, a `Double`, may fall on
            // either side; the timeline's moments are `now()`s, which land there one time in a thousand.)
            let moments = [0, 1_795_586_095.123_456, 1_795_586_095.000_499, 1_795_586_095.000_501, 1_795_586_095.999_501, 951_782_400.5, 4_102_444_799.999_999]
                .map { Date(timeIntervalSince1970: $0) }
            let read = try await postgres.withConnection { connection in
                try connection.query(
                    "SELECT u.at, rapport_rfc3339(u.at) FROM unnest(\(PostgresArray(moments))::timestamptz[]) WITH ORDINALITY AS u(at, n) ORDER BY u.n"
                ).decode((Date, String).self)
            }
            #expect(read.count == moments.count)
            #expect(read.map(\.1) == read.map(\.0.rfc3339), "SQL as Swift writes the moment it reads")
            #expect(read.map(\.1) == moments.map(\.rfc3339), "and as Swift writes the moment it sent")
        }
    }
}
