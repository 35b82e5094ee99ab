import Dispatch
import Foundation
import Shared
import Testing

/// Rows a batch looked up, found missing and creates itself at the end (a new shopper's identities, a new address's
/// contact) are inserted plainly, without `ON CONFLICT`. Against real PostgreSQL: when another transaction creates the
/// same key between the look-up and the insert, the loser fails with a retriable ``PostgresError/Code/concurrentInsert``
/// — never a second shopper or contact for one key — and doing its work again finds the winner's row.
@Suite struct ConcurrentInsertTests {
    /// Runs `first` in a transaction that stays open until `second`, in its own transaction, is seen waiting on it
    /// (a lock wait in `pg_stat_activity`); then commits `first` and returns what `second` ended with.
    static func race<A: Sendable, B: Sendable>(
        _ postgres: PostgresClient, first: @escaping @Sendable (PostgresConnection) throws -> A,
        second: @escaping @Sendable (PostgresConnection) throws -> B
    ) async throws -> (first: A, second: Result<B, any Error>) {
        let ready = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let winner = Task {
            try await postgres.withTransaction { connection in
                let value = try first(connection)
                ready.signal()
                release.wait()
                return value
            }
        }
        await Task.detached { ready.wait() }.value
        let loser = Task { try await postgres.withTransaction { try second($0) } }
        // The second transaction's insert waits on the first's uncommitted key.
        let deadline = ContinuousClock.now + .seconds(30)
        while try await postgres.withConnection({ connection in
            try connection.query(
                "SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).first?.decode(Int.self, at: 0) ?? 0
        }) == 0 {
            guard ContinuousClock.now < deadline else {
                release.signal()
                throw PostgresError(code: .unexpected, message: "the second transaction never waited on the first")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        release.signal()
        let value = try await winner.value
        return (value, await loser.result)
    }

    static func expectConcurrentInsert<T>(_ result: Result<T, any Error>) {
        switch result {
        case .success: Issue.record("the second transaction created the same key again")
        case .failure(let error):
            let postgres = error as? PostgresError
            #expect(postgres?.code == .concurrentInsert, "\(error)")
            #expect(postgres?.isRetriable == true)
        }
    }

    @Test func twoBatchesCreatingTheSameShopperOneCreatesItTheOtherIsToldToRetryAndThenFindsIt() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 3)
            defer { postgres.close() }
            _ = try await Migrator(client: postgres, logger: TestEnvironment.logger).migrate(try Migration.shared())
            let capture: [(store: String, identities: [ShopperIdentity])] = [
                ("s", [ShopperIdentity(store: "s", kind: .anonymousID, value: "a-1"), ShopperIdentity(store: "s", kind: .email, value: "jo@example.com")])
            ]
            let order: [(store: String, identities: [ShopperIdentity])] = [("s", [ShopperIdentity(store: "s", kind: .email, value: "jo@example.com")])]
            let (created, raced) = try await Self.race(
                postgres, first: { try ShopperResolver.resolve(capture, connection: $0) }, second: { try ShopperResolver.resolve(order, connection: $0) })
            Self.expectConcurrentInsert(raced)
            let again = try await postgres.withTransaction { try ShopperResolver.resolve(order, connection: $0) }
            #expect(again.shoppers == created.shoppers, "the retry finds the shopper the first batch created")
            #expect(again.created.isEmpty)
            let shoppers = try await postgres.withConnection { try $0.query("SELECT count(*)::int FROM rapport_shoppers").first?.decode(Int.self, at: 0) }
            #expect(shoppers == 1)
        }
    }

    /// The same race where the loser links identities one event at a time (`rapport_resolve_shoppers`: identities shared
    /// within its batch), against a winner on either path. Its insert used to do nothing on the conflict and hand its
    /// events a shopper it had just created with no identity — CaptureWorker's welcome recorded on a shopper no later
    /// event found, and a second welcome (scripts/chaos, seed 2).
    @Test(arguments: [false, true])
    func aBatchLinkingIdentitiesOneEventAtATimeLosesTheRaceWithoutKeepingAShopperOfItsOwn(winnerOneEventAtATime: Bool) async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 3)
            defer { postgres.close() }
            _ = try await Migrator(client: postgres, logger: TestEnvironment.logger).migrate(try Migration.shared())
            let known = [
                ShopperIdentity(store: "s", kind: .userID, value: "u-1"), ShopperIdentity(store: "s", kind: .anonymousID, value: "a-1"),
                ShopperIdentity(store: "s", kind: .email, value: "jo@example.com"),
            ]
            // One event alone takes the set-based path; two sharing identities, the sequential one.
            let order: [(store: String, identities: [ShopperIdentity])] = winnerOneEventAtATime ? [("s", known), ("s", known)] : [("s", known)]
            let capture: [(store: String, identities: [ShopperIdentity])] = [("s", known), ("s", Array(known.prefix(2)))]
            let (created, raced) = try await Self.race(
                postgres, first: { try ShopperResolver.resolve(order, connection: $0) }, second: { try ShopperResolver.resolve(capture, connection: $0) })
            Self.expectConcurrentInsert(raced)
            let again = try await postgres.withTransaction { try ShopperResolver.resolve(capture, connection: $0) }
            #expect(again.shoppers == [created.shoppers[0], created.shoppers[0]], "the retry finds the shopper the first batch created")
            let orphans = try await postgres.withConnection { connection in
                try connection.query(
                    "SELECT count(*)::int FROM rapport_shoppers s WHERE NOT EXISTS (SELECT 1 FROM rapport_identities i WHERE i.shopper_id = s.shopper_id)"
                ).first?.decode(Int.self, at: 0)
            }
            #expect(orphans == 0, "no shopper without an identity")
        }
    }

    @Test func twoBatchesCreatingTheSameContactOneWritesItTheOtherIsToldToRetryAndThenReadsItsState() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 3)
            defer { postgres.close() }
            _ = try await Migrator(client: postgres, logger: TestEnvironment.logger).migrate(try Migration.shared())
            let key = Contacts.Key(storeID: "s", email: "jo@example.com")
            // As CaptureWorker does: the address loaded (allocated, not stored), its state set by the batch, saved at the end.
            @Sendable func capture(marketing: Bool) -> @Sendable (PostgresConnection) throws -> Contacts.Contact {
                { connection in
                    var contact = try #require(try Contacts.load([key], sentSince: Date(timeIntervalSince1970: 0), creating: true, connection: connection)[key])
                    #expect(!contact.isStored, "a new address is allocated, not inserted, by the load")
                    contact.permission.transactional = true
                    contact.permission.marketing = marketing
                    try Contacts.save([contact], connection: connection)
                    return contact
                }
            }
            let (first, raced) = try await Self.race(postgres, first: capture(marketing: true), second: capture(marketing: false))
            Self.expectConcurrentInsert(raced)
            let stored = try await postgres.withTransaction {
                try Contacts.load([key], sentSince: Date(timeIntervalSince1970: 0), creating: true, connection: $0)[key]
            }
            #expect(stored?.isStored == true)
            #expect(stored?.contactID == first.contactID && stored?.unsubscribeToken == first.unsubscribeToken)
            #expect(stored?.permission.marketing == true, "the first batch's state, which the retry then decides from")
            let contacts = try await postgres.withConnection { try $0.query("SELECT count(*)::int FROM rapport_contacts").first?.decode(Int.self, at: 0) }
            #expect(contacts == 1)
        }
    }
}
