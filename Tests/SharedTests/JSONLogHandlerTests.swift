import Testing

@testable import Shared

@Suite struct JSONLogHandlerTests {
    @Test(arguments: [
        ("captured ada@example.com from popup", "captured <email> from popup"),
        ("to: Ada.Lovelace+shop@mail.example.co.uk.", "to: <email>."),
        ("a@b.c and d@e.f", "<email> and <email>"),
        ("no address @ all, user@localhost", "no address @ all, user@localhost"),
        ("plain", "plain"),
    ])
    func redactsAnythingShapedLikeAnEmail(input: String, expected: String) {
        #expect(JSONLogHandler.redactingEmails(input) == expected)
    }

    @Test func escapesJSONStrings() {
        var line = ""
        JSONLogHandler.appendString("quote \" backslash \\ newline \n bell \u{07}", to: &line)
        #expect(line == #""quote \" backslash \\ newline \n bell \u0007""#)
    }
}
