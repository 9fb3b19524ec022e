import Testing
@testable import Sluice

@Suite("JSON parser and serializer")
struct JSONTests {
    /// Parses, checking that `isValid` agrees.
    func parse(_ text: String) throws -> JSONValue {
        #expect(Array(text.utf8).withUnsafeBytes { JSONParser().isValid($0) }, "isValid refuses \(text)")
        return try JSONParser().parse(text)
    }

    /// The parse error, checking that `isValid` agrees.
    func failure(_ bytes: [UInt8], maxDepth: Int = 512) -> JSONParseError? {
        let valid = bytes.withUnsafeBytes { JSONParser(maxDepth: maxDepth).isValid($0) }
        do {
            _ = try JSONParser(maxDepth: maxDepth).parse(bytes)
            #expect(valid, "isValid refuses \(String(decoding: bytes, as: UTF8.self))")
            return nil
        } catch {
            #expect(!valid, "isValid accepts \(String(decoding: bytes, as: UTF8.self))")
            return error
        }
    }

    func failure(_ text: String) -> JSONParseError? { failure(Array(text.utf8)) }

    @Test func realisticEventRoundTripsToExactBytes() throws {
        let text = #"{"metadata":{"event_id":"0b6f","timestamp":"2026-11-23T01:02:03.456Z","version":"1.0.0"},"user":{"id":"u-1","attributes":{"plan":"pro"}},"payload":{"event_type":"purchase","properties":{"value":12.5,"count":3,"tags":["a","b"],"ok":true,"none":null,"note":"caf\u00e9 \ud83d\ude00 \"q\" \\ /"}}}"#
        let value = try parse(text)
        #expect(value.value(atPath: "metadata.event_id") == "0b6f")
        #expect(value.value(atPath: "payload.properties.value") == .double(12.5))
        #expect(value.value(atPath: "payload.properties.count") == .int(3))
        #expect(value.value(atPath: "payload.properties.note")?.stringValue == "café 😀 \"q\" \\ /")
        #expect(value.serializedString == #"{"metadata":{"event_id":"0b6f","timestamp":"2026-11-23T01:02:03.456Z","version":"1.0.0"},"user":{"id":"u-1","attributes":{"plan":"pro"}},"payload":{"event_type":"purchase","properties":{"value":12.5,"count":3,"tags":["a","b"],"ok":true,"none":null,"note":"café 😀 \"q\" \\ /"}}}"#)
        #expect(try parse(value.serializedString) == value)
    }

    @Test func numbers() throws {
        #expect(try parse("0") == .int(0))
        #expect(try parse("-0") == .int(0))
        #expect(try parse("1.5e3") == .double(1500))
        #expect(try parse("9223372036854775807") == .int(Int64.max))
        #expect(try parse("-9223372036854775808") == .int(Int64.min))
        #expect(try parse("9223372036854775808") == .double(9223372036854775808))
        #expect(try parse("1E-2") == .double(0.01))
        #expect(failure("1e400") == JSONParseError(.invalidNumber, offset: 0))
        #expect(failure("01") == JSONParseError(.invalidNumber, offset: 1))
        #expect(failure("-") == JSONParseError(.unexpectedEnd, offset: 1))
        #expect(failure("1.") == JSONParseError(.unexpectedEnd, offset: 2))
        #expect(failure("1.x") == JSONParseError(.invalidNumber, offset: 2))
        #expect(failure("NaN") == JSONParseError(.unexpectedCharacter, offset: 0))
    }

    @Test func controlCharactersAreEscapedOnOutput() {
        let value: JSONValue = .string("a\u{1}b\n\t\u{8}\u{c}\r")
        #expect(value.serializedString == #""a\u0001b\n\t\b\f\r""#)
    }

    @Test func errorCodesAndOffsets() {
        #expect(failure(#"{"a":1,}"#) == JSONParseError(.unexpectedCharacter, offset: 7))
        #expect(failure("[1,2") == JSONParseError(.unexpectedEnd, offset: 4))
        #expect(failure(#"{"a":1} x"#) == JSONParseError(.trailingData, offset: 8))
        #expect(failure([0x22, 0x61, 0xFF, 0x22]) == JSONParseError(.invalidUTF8, offset: 2))
        #expect(failure([0x22, 0xC3, 0x28, 0x22]) == JSONParseError(.invalidUTF8, offset: 2))
        #expect(failure([0x22, 0xED, 0xA0, 0x80, 0x22]) == JSONParseError(.invalidUTF8, offset: 2))  // encoded surrogate
        #expect(failure([0x22, 0xC0, 0xAF, 0x22]) == JSONParseError(.invalidUTF8, offset: 1))  // overlong
        #expect(failure("\"a\u{1}\"") == JSONParseError(.invalidString, offset: 2))
        #expect(failure(#""\x""#) == JSONParseError(.invalidEscape, offset: 1))
        #expect(failure(#""\ud83d""#) == JSONParseError(.invalidEscape, offset: 1))  // lone high surrogate
        #expect(failure(#""\ude00""#) == JSONParseError(.invalidEscape, offset: 1))  // lone low surrogate
        #expect(failure(#"{"a" 1}"#) == JSONParseError(.unexpectedCharacter, offset: 5))
        #expect(failure("") == JSONParseError(.unexpectedEnd, offset: 0))
        #expect(failure("tru") == JSONParseError(.unexpectedEnd, offset: 3))
        #expect(failure("// c\n1") == JSONParseError(.unexpectedCharacter, offset: 0))
        #expect(JSONParseError(.trailingData, offset: 8).description == "json_trailing_data at byte 8")
    }

    @Test func validityWithoutAValueAgreesWithParsing() {
        for text in [#"{"a":[1,-2.5e-3,true,false,null,{}],"b":"\u00e9\ud83d\ude00\n","a":{"c":[]}}"#, " [ ] ", "\"é😀\"",
                     "0", "-0.0E+1", String(repeating: "9", count: 300), "1" + String(repeating: "0", count: 308) + ".5"] {
            #expect(failure(text) == nil, "\(text)")
        }
        for text in ["1e999", "-1E400", String(repeating: "9", count: 400), String(repeating: "9", count: 309) + ".0", "[1,]", #"{"a":1"#, #"{"a"}"#, "[\"\t\"]", "nul",
                     #"{1:2}"#, "[] []", "+1", ".5", "1e", #""\u12""#, #"["\ud800\u0041"]"#] {
            #expect(failure(text) != nil, "\(text)")
        }
        #expect(failure(Array("[[[1]]]".utf8), maxDepth: 3) == nil)
        #expect(failure(Array("[[[[1]]]]".utf8), maxDepth: 3)?.code == .tooDeep)
        #expect(failure(Array(#"{"a":{"b":{"c":{}}}}"#.utf8), maxDepth: 3)?.code == .tooDeep)
    }

    @Test func deepNestingIsAnErrorNotACrash() {
        let deep = String(repeating: "[", count: 10_000)
        #expect(failure(deep) == JSONParseError(.tooDeep, offset: 512))
        let ok = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        #expect(failure(ok) == nil)
        let objects = String(repeating: #"{"a":"#, count: 600)
        #expect(failure(objects)?.code == .tooDeep)
    }

    @Test func objectsKeepOrderAndCompareWithoutIt() throws {
        let value = try parse(#"{"b":1,"a":2,"b":3}"#)
        #expect(value.objectValue?.keys == ["b", "a"])
        #expect(value["b"] == .int(3))
        #expect(value == ["a": 2, "b": 3])
        #expect(Set([value, ["a": 2, "b": 3] as JSONValue]).count == 1)
        #expect(value.serializedString == #"{"b":3,"a":2}"#)
    }

    @Test func pathsGetAndSet() {
        var value: JSONValue = ["metadata": ["event_id": "x"]]
        value.setValue("y", atPath: "metadata.source")
        value.setValue(true, atPath: "new.deep.flag")
        #expect(value.serializedString == #"{"metadata":{"event_id":"x","source":"y"},"new":{"deep":{"flag":true}}}"#)
        value.setValue(nil, atPath: "metadata.event_id")
        #expect(value.value(atPath: "metadata.event_id") == nil)
        #expect(value.value(atPath: "metadata.source.more") == nil)
        #expect(JSONValue.double(3).intValue == 3)
        #expect(JSONValue.double(3.5).intValue == nil)
        // Removing what is not there changes nothing: no empty objects appear, no string is replaced.
        var event: JSONValue = ["user": "just-a-string", "n": 1]
        event.setValue(nil, at: JSONPath("user.id"))
        event.setValue(nil, at: JSONPath("context.location.country"))
        #expect(event.serializedString == #"{"user":"just-a-string","n":1}"#)
        // Setting below a non-object replaces it with an object.
        event.setValue("u-1", at: JSONPath("user.id"))
        #expect(event.serializedString == #"{"user":{"id":"u-1"},"n":1}"#)
    }

    @Test func settingInPlaceLeavesCopiesAlone() {
        let original: JSONValue = ["context": ["location": ["country": "DE"]]]
        var copy = original
        copy.setValue("Germany", at: JSONPath("context.location.country_name"))
        #expect(original.serializedString == #"{"context":{"location":{"country":"DE"}}}"#)
        #expect(copy.serializedString == #"{"context":{"location":{"country":"DE","country_name":"Germany"}}}"#)
        #expect(JSONPath("a.b.c").keys == ["a", "b", "c"])
        #expect(JSONPath("a.b").description == "a.b")
    }
}
