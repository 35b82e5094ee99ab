import Foundation
import Testing

@testable import Shared

@Suite struct EnvironmentTests {
    @Test func readsAValueOrItsFile() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rapport-secret-\(UUID().uuidString)")
        try Data("s3cret\n".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let environment = Environment(["A": "plain", "B_FILE": file.path])
        #expect(try environment.string("A") == "plain")
        #expect(try environment.string("B") == "s3cret")
        #expect(try environment.string("C") == nil)
        #expect(environment.names(withPrefix: "B") == ["B"])
    }

    @Test func refusesBothAValueAndAFile() {
        let environment = Environment(["A": "x", "A_FILE": "/dev/null"])
        #expect(throws: ConfigurationError("A", "set both A and A_FILE; set one")) { try environment.string("A") }
    }

    @Test func namesTheVariableOfABadNumberOrChoice() throws {
        let environment = Environment(["N": "12x", "EMPTY": "  ", "C": "loud"])
        #expect(throws: ConfigurationError("N", "expected a whole number from 1 to 10")) {
            try environment.integer("N", default: 1, in: 1...10)
        }
        #expect(throws: ConfigurationError("EMPTY", "must not be empty")) { try environment.string("EMPTY", default: "x") }
        #expect(throws: ConfigurationError("C", "expected one of json, text")) {
            try environment.choice("C", default: "json", among: ["json", "text"])
        }
        #expect(try environment.integer("MISSING", default: 7, in: 1...10) == 7)
    }
}
