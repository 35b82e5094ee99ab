import Testing

@testable import Shared

@Suite struct PostgresConfigurationTests {
    @Test func acceptsURIsAndKeyValueStrings() throws {
        for url in [
            "postgresql://rapport@db:5432/rapport?sslmode=verify-full",
            "postgres://u:p@h1:5432,h2:5433/d",
            "host=localhost port=5432 dbname=rapport sslmode=require",
        ] {
            let configuration = try PostgresConfiguration(environment: Environment(["DATABASE_URL": url]), applicationName: "t")
            #expect(configuration.url == url)
        }
    }

    @Test(arguments: [
        "postgresql://u:hunter2@db:notaport/rapport",
        "postgresql://u:hunter2@db/rapport?sslmode=sometimes",
        "postgresql://u:hunter2@db/rapport?nonsense=1",
        "host=db password=hunter2 port",
    ])
    func refusesAMalformedURLWithoutRepeatingIt(url: String) {
        let error = #expect(throws: ConfigurationError.self) {
            try PostgresConfiguration(environment: Environment(["DATABASE_URL": url]), applicationName: "t")
        }
        #expect(error?.setting == "DATABASE_URL")
        #expect(error?.description.contains("hunter2") == false)
    }

    @Test func neverPrintsTheURL() {
        let configuration = PostgresConfiguration(url: "postgresql://u:hunter2@db/rapport")
        #expect(!"\(configuration)".contains("hunter2"))
    }

    @Test func poolSizeIsBounded() {
        #expect(throws: ConfigurationError("DATABASE_POOL_SIZE", "expected a whole number from 1 to 100")) {
            try PostgresConfiguration(environment: Environment(["DATABASE_POOL_SIZE": "0"]), applicationName: "t")
        }
    }
}

extension PostgresConfigurationTests {
    @Test(arguments: [
        ("postgresql://u:p@db:5432/rapport?sslmode=require", "postgresql://u:p@db:5432/other?sslmode=require"),
        ("postgresql://db", "postgresql://db/other"),
        ("postgres://h1:1,h2:2/x", "postgres://h1:1,h2:2/other"),
        ("host=db dbname=rapport", "host=db dbname=rapport dbname=other"),
    ])
    func pointsAtAnotherDatabaseOfTheSameServer(url: String, expected: String) {
        #expect(PostgresConfiguration(url: url).replacingDatabase(with: "other").url == expected)
    }
}
