import Logging
import Testing
@testable import Sluice

@Suite("JSON log lines")
struct JSONLogHandlerTests {
    @Test func oneObjectPerLineWithTheMetadataAsFields() throws {
        let bytes = JSONLogHandler.line(
            time: (seconds: 1_796_000_000, milliseconds: 7), level: .warning, message: "chunk \"x\"\nretried", label: "sluice",
            metadata: ["function": "validate", "job": "j-1", "trace": "4bf92f3577b34da6a3ce929d0e0e4736", "attempt": .stringConvertible(2),
                       "msg": "shadow", "tags": ["a", "b"], "sizes": ["in": "3"]])
        #expect(!bytes.contains(UInt8(ascii: "\n")), "the newline in the message is escaped")
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text == #"{"ts":"2026-11-30T00:53:20.007Z","level":"warning","msg":"chunk \"x\"\nretried","logger":"sluice","attempt":"2","function":"validate","job":"j-1","meta.msg":"shadow","sizes":{"in":"3"},"tags":["a","b"],"trace":"4bf92f3577b34da6a3ce929d0e0e4736"}"#)
        let parsed = try JSONParser().parse(bytes)
        #expect(parsed["msg"]?.stringValue == "chunk \"x\"\nretried")
        #expect(parsed["meta.msg"]?.stringValue == "shadow")
    }

    @Test func timestampsAreUTCWithMilliseconds() {
        #expect(JSONLogHandler.timestamp(seconds: 0, milliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(JSONLogHandler.timestamp(seconds: 951_782_400, milliseconds: 999) == "2000-02-29T00:00:00.999Z")
    }

    @Test func theFormatComesFromTheEnvironment() {
        #expect(RuntimeConfiguration(environment: [:]).logFormat == .json)
        #expect(RuntimeConfiguration(environment: ["SLUICE_LOG_FORMAT": "TEXT"]).logFormat == .text)
        #expect(RuntimeConfiguration(environment: ["SLUICE_LOG_FORMAT": "xml"]).logFormat == .json)
    }
}
