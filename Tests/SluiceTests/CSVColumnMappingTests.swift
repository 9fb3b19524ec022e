import Sluice
import SluiceUploads
import Testing

@Suite("CSV column mapping")
struct CSVColumnMappingTests {
    /// The events of `csv` decoded with `mapping`, each parsed back to a value, with their lines.
    func mapped(_ csv: String, _ mapping: CSVColumnMapping = CSVColumnMapping(), piece: Int = 1 << 20) throws -> [(JSONValue, Int, row: Bool)] {
        try decode(CSVDecoder(mapping: mapping), Array(csv.utf8), piece: piece).map { record in
            switch record {
            case .event(let value, let line): (value, line, false)
            case .row(_, _, let line): (try #require(try record.eventValue()), line, true)
            case .malformed(let reason, let line, _): (.string("malformed: \(reason)"), line, false)
            }
        }
    }

    @Test(arguments: UploadDecoderTests.pieces)
    func builtinColumnsGoToTheEventShape(piece: Int) throws {
        let csv = """
            event_id,timestamp,user_id,country,event_type,properties,extra,a.b\r
            e1,2026-11-30T05:00:00Z,u-1,BR,click,"{""page"":""/p/1"",""n"":[1,2.5,null]}",x,y\r
            e2,,u-2,,view,"[""a""]",,\r
            e3,t,,,,not json,,\r
            e4,t,,FR,,"{broken",,
            """
        let events = try mapped(csv, piece: piece)
        #expect(events.map(\.1) == [2, 3, 4, 5])
        #expect(events.allSatisfy { $0.row })
        #expect(events.map(\.0) == [
            ["metadata": ["event_id": "e1", "timestamp": "2026-11-30T05:00:00Z"], "user": ["id": "u-1"],
             "context": ["location": ["country": "BR"]], "payload": ["event_type": "click", "properties": ["page": "/p/1", "n": [1, 2.5, nil]]],
             "extra": "x", "a": ["b": "y"]],
            // Empty cells are left out, and so is an object they leave empty (context).
            ["metadata": ["event_id": "e2"], "user": ["id": "u-2"], "payload": ["event_type": "view", "properties": ["a"]]],
            // A JSON column's cell that is not JSON stays a string.
            ["metadata": ["event_id": "e3", "timestamp": "t"], "payload": ["properties": "not json"]],
            ["metadata": ["event_id": "e4", "timestamp": "t"], "context": ["location": ["country": "FR"]], "payload": ["properties": "{broken"]],
        ])
    }

    /// Columns named in the configuration (a manifest's `csv.columns`, a dataset's
    /// `steps.ingest.csv`) go to their paths, in rows and in trees alike.
    @Test func configuredColumnsGoToTheirPaths() throws {
        let mapping = try CSVColumnMapping(config: ["columns": ["when": "meta.time"], "json_columns": ["blob"]], file: "datasets/x.yaml",
                                           paths: ["id": "meta.id"], jsonColumns: [])
        let events = try mapped("id,when,blob,other\ne1,2026-11-30T05:00:00Z,\"{\"\"a\"\":1}\",x\n", mapping)
        #expect(events.map(\.0) == [["meta": ["id": "e1", "time": "2026-11-30T05:00:00Z"], "blob": ["a": 1], "other": "x"]])
        #expect(mapping.map(["id": "e2", "when": "t"]) == ["meta": ["id": "e2", "time": "t"]])
    }

    @Test func rowsAndTheirShapeAreExactBytesAndBuildTheMappedTree() throws {
        // A row holds the cells in header order, escaped as the serializer does, `null` for an
        // empty one; the shape puts each column's number where its path goes.
        let mapping = CSVColumnMapping(paths: ["q": "x.q", "n": "x.n", "t": "t"], jsonColumns: ["j"])
        let csv = "t,q,j,n,z\n\"tab\there \"\"quoted\"\" back\\\\slash\",\"line\nbreak\",\"{\"\"k\"\":1}\",é\u{1B}ü,\"\"\n"
        var flatDecoder = CSVDecoder(), rowDecoder = CSVDecoder(mapping: mapping)
        let flat = try flatDecoder.decodeAll(Array(csv.utf8))
        let rows = try rowDecoder.decodeAll(Array(csv.utf8))
        guard case .event(let value, 2)? = flat.first, case .row(let row, let shape, 2)? = rows.first else {
            Issue.record("expected one event on line 2, got \(flat) and \(rows)")
            return
        }
        #expect(String(decoding: shape, as: UTF8.self) == #"{"t":0,"x":{"q":1,"n":3},"j":2,"z":4}"#)
        #expect(String(decoding: row, as: UTF8.self) == #"["tab\there \"quoted\" back\\\\slash","line\nbreak",{"k":1},"é\u001bü",null]"#)
        let event = try #require(try rows[0].eventValue())
        #expect(event.serializedString == mapping.map(value).serializedString)
        #expect(event.serializedString == #"{"t":"tab\there \"quoted\" back\\\\slash","x":{"q":"line\nbreak","n":"é\u001bü"},"j":{"k":1}}"#)
    }

    @Test func overlappingPathsFallBackToTheTree() throws {
        // `user` is a column and also the parent of `user_id`'s path: which wins depends on the
        // cells, so these records are built as trees, with the tree's answer.
        let csv = "user,user_id,n\nplain,u-1,1\n,u-2,2\nplain,,3\n"
        let events = try mapped(csv)
        #expect(events.allSatisfy { !$0.row })
        #expect(events.map(\.0) == [["user": ["id": "u-1"], "n": "1"], ["user": ["id": "u-2"], "n": "2"], ["user": "plain", "n": "3"]])
        #expect(CSVColumnMapping().layout(header: ["user", "user_id"]) == nil)
        #expect(CSVColumnMapping().layout(header: ["user_id", "user.id"]) == nil)  // two columns, one path
        #expect(CSVColumnMapping().layout(header: ["user_id", "session_id", "attributes"]) != nil)
    }

    @Test func jsonCellsDeeperThanTheLimitStayStrings() throws {
        let depth = CSVColumnMapping.maxCellDepth
        let fits = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        let deeper = String(repeating: "[", count: depth + 1) + String(repeating: "]", count: depth + 1)
        let events = try mapped("event_id,properties\ne1,\(fits)\ne2,\(deeper)\n")
        #expect(events.map(\.2) == [true, true])
        guard case .array = events[0].0["payload"]?["properties"] else {
            Issue.record("a cell \(depth) deep is parsed: \(events[0].0)")
            return
        }
        #expect(events[1].0["payload"]?["properties"] == .string(deeper))
        // The tree path draws the line at the same depth.
        #expect(CSVColumnMapping().map(["properties": .string(deeper)]) == ["payload": ["properties": .string(deeper)]])
    }

    @Test func malformedRecordsAndSchemaAreThoseOfTheFlatDecoding() throws {
        let csv = "event_id,n,properties\ne1,1,\"{}\"\ne2,2\ne3,x\"y,\n" + String(repeating: "z", count: 40) + ",3,\n"
        let limits = UploadLimits(maxRecordBytes: 32, maxQuarantinedBytes: 8, maxDepth: 8)
        var flat = CSVDecoder(limits: limits)
        var written = CSVDecoder(limits: limits, mapping: CSVColumnMapping())
        let a = try decode(into: &flat, Array(csv.utf8), piece: 3)
        let b = try decode(into: &written, Array(csv.utf8), piece: 5)
        #expect(b.count == 4)
        #expect(Array(a.dropFirst()) == Array(b.dropFirst()))
        #expect(Array(b.dropFirst()) == [
            .malformed(reason: "csv_wrong_cell_count", line: 3, raw: "e2,2"),
            .malformed(reason: "csv_bad_quote", line: 4, raw: "e3,x\"y,"),
            .malformed(reason: "record_too_long", line: 5, raw: "zzzzzzzz"),
        ])
        #expect(flat.schema.map(\.name) == written.schema.map(\.name))
        #expect(flat.schema.map(\.type) == written.schema.map(\.type))
        #expect(written.schema.map(\.type) == [.string, .integer, .string])
    }
}
