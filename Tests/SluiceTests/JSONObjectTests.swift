@testable import Sluice
import Testing

/// A JSON object keeps its keys in order and one value per key, whether it is small (searched
/// linearly) or large (with its hash table of positions): the same answers either way.
@Suite("JSON objects small and large")
struct JSONObjectTests {
    /// Object sizes on both sides of the index threshold.
    static let sizes = [3, JSONObject.indexedAbove, JSONObject.indexedAbove + 1, 200]

    @Test(arguments: sizes) func repeatedKeysKeepTheFirstPositionAndTheLastValue(keys: Int) throws {
        var text = "{"
        for i in 0..<keys { text += "\"k\(i)\":\(i)," }
        text += "\"k0\":\"last\",\"k\(keys - 1)\":[1],\"new\":null}"
        let parsed = try JSONParser().parse(text)
        let object = try #require(parsed.objectValue)
        #expect(object.count == keys + 1)
        #expect(object.keys == (0..<keys).map { "k\($0)" } + ["new"])
        #expect(object["k0"] == "last")
        #expect(object["k\(keys - 1)"] == [1])
        #expect(object["new"] == .null)
        #expect(object["k\(keys)"] == nil)
        #expect(parsed.serializedString.hasPrefix("{\"k0\":\"last\","))
    }

    @Test(arguments: sizes) func removingAndAddingKeepsPositions(keys: Int) {
        var object = JSONObject()
        for i in 0..<keys { object["k\(i)"] = .int(Int64(i)) }
        object["k1"] = nil
        object["k0"] = "zero"
        object["k1"] = "again"
        #expect(object.count == keys)
        #expect(object.keys == ["k0"] + (2..<keys).map { "k\($0)" } + ["k1"])
        // Every key still finds its own value after the removal shifted the rest.
        for i in 2..<keys { #expect(object["k\(i)"] == .int(Int64(i))) }
        #expect(object["k0"] == "zero" && object["k1"] == "again")
        object.updateValue(forKey: "k2", default: .null) { $0 = "two" }
        object.updateValue(forKey: "added", default: 7) { _ in }
        #expect(object["k2"] == "two" && object["added"] == 7 && object.keys.last == "added")
        object["missing"] = nil
        #expect(object.count == keys + 1)
    }

    @Test(arguments: sizes) func equalityAndHashIgnoreOrderAndSize(keys: Int) {
        var forward = JSONObject(), backward = JSONObject()
        for i in 0..<keys { forward["k\(i)"] = .int(Int64(i)) }
        for i in (0..<keys).reversed() { backward["k\(i)"] = .int(Int64(i)) }
        #expect(forward == backward)
        #expect(forward.hashValue == backward.hashValue)
        backward["k0"] = 99
        #expect(forward != backward)
    }

    @Test func setValueAtAPathReachesIntoALargeObject() {
        var value = JSONValue.object([:])
        for i in 0..<100 { value.setValue(.int(Int64(i)), atPath: "props.c\(i)") }
        value.setValue(nil, atPath: "props.c50")
        value.setValue("x", atPath: "props.c99.deeper")
        #expect(value["props"]?.objectValue?.count == 99)
        #expect(value.value(atPath: "props.c50") == nil)
        #expect(value.value(atPath: "props.c51") == 51)
        #expect(value.value(atPath: "props.c99.deeper") == "x")
    }
}
