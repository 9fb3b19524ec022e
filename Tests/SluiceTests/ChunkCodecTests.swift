import Testing
@testable import Sluice

@Suite("Chunk encoding")
struct ChunkCodecTests {
    func field(_ fields: [(String, [UInt8])], _ name: String) -> String? {
        fields.first { $0.0 == name }.map { String(decoding: $0.1, as: UTF8.self) }
    }

    @Test func exactFieldsAndBytes() {
        let events = [Event(["id": "a", "n": 1]), Event(["id": "b", "text": "é\"\n"])]
        let fields = ChunkCodec.encode(events: events, jobID: "job-1", traceID: "abc")
        #expect(fields.map(\.0) == ["v", "n", "job", "trace", "events"])
        #expect(field(fields, "v") == "1")
        #expect(field(fields, "n") == "2")
        #expect(field(fields, "job") == "job-1")
        #expect(field(fields, "trace") == "abc")
        #expect(field(fields, "events") == #"[{"id":"a","n":1},{"id":"b","text":"é\"\n"}]"#)
    }

    @Test func roundTrip() throws {
        let events = (0..<50).map { Event(["metadata": ["event_id": .string("e\($0)")], "value": .int(Int64($0))]) }
        let chunk = try ChunkCodec.decode(id: "1-0", fields: ChunkCodec.encode(events: events, jobID: nil, traceID: "t"))
        #expect(chunk.id == "1-0")
        #expect(chunk.jobID == nil)
        #expect(chunk.traceID == "t")
        #expect(chunk.events == events)
        #expect(chunk.events.map(\.id) == (0..<50).map { "e\($0)" })
    }

    @Test func originIsKeptAndIsTheIdentity() throws {
        let fields = ChunkCodec.encode(events: [Event(["id": "a"])], jobID: "j", traceID: nil, origin: "5-0")
        #expect(fields.map(\.0) == ["v", "n", "job", "origin", "events"])
        let chunk = try ChunkCodec.decode(id: "9-0", fields: fields)
        #expect(chunk.origin == "5-0")
        #expect(chunk.identity == "5-0")
        #expect(Chunk(id: "9-0", events: []).identity == "9-0")
        let stamped = ChunkCodec.encode(events: [Event(["id": "a"])], jobID: nil, traceID: nil, receivedAt: 1_795_435_200_123)
        #expect(stamped.map(\.0) == ["v", "n", "received", "events"])
        #expect(try ChunkCodec.decode(id: "1-0", fields: stamped).receivedAt == 1_795_435_200_123)
    }

    @Test func emptyChunk() throws {
        let fields = ChunkCodec.encode(events: [Event](), jobID: nil, traceID: nil)
        #expect(field(fields, "events") == "[]")
        #expect(try ChunkCodec.decode(id: "2-0", fields: fields).events.isEmpty)
    }

    @Test func rejectsBadEntries() {
        func code(_ fields: [(String, [UInt8])]) -> String? {
            do {
                _ = try ChunkCodec.decode(id: "1-0", fields: fields)
                return nil
            } catch {
                return error.code
            }
        }
        #expect(code([("events", Array("[]".utf8))]) == "chunk_missing_field")
        #expect(code([("v", Array("9".utf8)), ("events", Array("[]".utf8))]) == "chunk_bad_version")
        #expect(code([("v", Array("1".utf8))]) == "chunk_missing_field")
        #expect(code([("v", Array("1".utf8)), ("events", Array("[{".utf8))]) == "chunk_bad_events")
        #expect(code([("v", Array("1".utf8)), ("events", Array("{}".utf8))]) == "chunk_bad_events")
        #expect(code([("v", Array("1".utf8)), ("n", Array("3".utf8)), ("events", Array("[1]".utf8))]) == "chunk_count_mismatch")
    }

    @Test func rowsOfOneShapeAreExactBytesAndDecodeToTheirEvents() throws {
        let shape = #"{"metadata":{"event_id":0},"user":{"id":1,"plan":3},"tags":2}"#
        let rows = #"[["e1","u-1",["a"],"pro"],["e2",null,null,null],[null,null,{"k":1},null]]"#
        let fields = ChunkCodec.encode(rowsJSON: Array(rows.utf8), shapeJSON: Array(shape.utf8), count: 3, jobID: "j", traceID: "t",
                                       receivedAt: 1_795_435_200_123)
        #expect(fields.map(\.0) == ["v", "n", "job", "trace", "received", "shape", "rows"])
        #expect(field(fields, "v") == "2")
        #expect(field(fields, "shape") == shape)
        #expect(field(fields, "rows") == rows)
        let chunk = try ChunkCodec.decode(id: "3-0", fields: fields)
        #expect(chunk.jobID == "j")
        #expect(chunk.receivedAt == 1_795_435_200_123)
        // A null leaves its member out, and an object it leaves empty goes too; keys keep the shape's order.
        #expect(chunk.events.map(\.value.serializedString) == [
            #"{"metadata":{"event_id":"e1"},"user":{"id":"u-1","plan":"pro"},"tags":["a"]}"#,
            #"{"metadata":{"event_id":"e2"}}"#,
            #"{"tags":{"k":1}}"#,
        ])
        #expect(chunk.events.map(\.id) == ["e1", "e2", nil])
        // Re-encoded by a later stage, the chunk is one of events, with the same events.
        let again = try ChunkCodec.decode(id: "4-0", fields: ChunkCodec.encode(chunk))
        #expect(field(ChunkCodec.encode(chunk), "v") == "1")
        #expect(again.events == chunk.events)
    }

    @Test func rejectsRowsThatDoNotFitTheirShape() {
        func code(shape: String?, rows: String?, n: Int? = nil) -> String? {
            var fields: [(String, [UInt8])] = [("v", Array("2".utf8))]
            if let n { fields.append(("n", Array(String(n).utf8))) }
            if let shape { fields.append(("shape", Array(shape.utf8))) }
            if let rows { fields.append(("rows", Array(rows.utf8))) }
            do {
                _ = try ChunkCodec.decode(id: "1-0", fields: fields)
                return nil
            } catch {
                return error.code
            }
        }
        #expect(code(shape: #"{"a":0,"b":{"c":1}}"#, rows: #"[["x",null]]"#, n: 1) == nil)
        #expect(code(shape: nil, rows: "[]") == "chunk_missing_field")
        #expect(code(shape: #"{"a":0}"#, rows: nil) == "chunk_missing_field")
        #expect(code(shape: #"{"a":1}"#, rows: "[]") == "chunk_bad_shape")  // columns must be 0..<n
        #expect(code(shape: #"{"a":0,"b":0}"#, rows: "[]") == "chunk_bad_shape")  // each once
        #expect(code(shape: #"{"a":"0"}"#, rows: "[]") == "chunk_bad_shape")
        #expect(code(shape: #"{"a":-1}"#, rows: "[]") == "chunk_bad_shape")
        #expect(code(shape: "[0]", rows: "[]") == "chunk_bad_shape")
        #expect(code(shape: "{", rows: "[]") == "chunk_bad_shape")
        #expect(code(shape: #"{"a":0,"b":1}"#, rows: #"[["x"]]"#) == "chunk_bad_events")  // one value short
        #expect(code(shape: #"{"a":0}"#, rows: #"[{"a":1}]"#) == "chunk_bad_events")
        #expect(code(shape: #"{"a":0}"#, rows: #"{}"#) == "chunk_bad_events")
        #expect(code(shape: #"{"a":0}"#, rows: #"[["x"],"#) == "chunk_bad_events")
        #expect(code(shape: #"{"a":0}"#, rows: #"[["x"]]"#, n: 2) == "chunk_count_mismatch")
    }

    @Test func streamKeysShareOneHashTag() {
        let keys = StreamKeys(hashTag: "p1")
        #expect(keys.stream("validate") == "{p1}:stream:validate")
        #expect(keys.deadLetters("validate") == "{p1}:dlq:validate")
        #expect(keys.job("j") == "{p1}:job:j")
    }
}
