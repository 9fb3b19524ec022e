import Sluice
@testable import SluiceUploads
import SluiceFunctions
import Testing

/// Feeds `body` to a decoder in pieces of `piece` bytes, to prove nothing depends on where
/// the pieces break.
func decode<D: UploadDecoder>(_ decoder: D, _ body: [UInt8], piece: Int) throws(UploadError) -> [UploadRecord] {
    var decoder = decoder
    return try decode(into: &decoder, body, piece: piece)
}

/// The same, keeping the decoder's state for inspection afterwards.
func decode<D: UploadDecoder>(into decoder: inout D, _ body: [UInt8], piece: Int) throws(UploadError) -> [UploadRecord] {
    var records: [UploadRecord] = []
    var start = 0
    while start < body.count {
        let end = min(start + piece, body.count)
        try decoder.feed(Array(body[start..<end]), into: &records)
        start = end
    }
    try decoder.finish(into: &records)
    return records
}

func failure<D: UploadDecoder>(_ decoder: D, _ body: [UInt8], piece: Int = 1 << 20) -> UploadError? {
    do {
        _ = try decode(decoder, body, piece: piece)
        return nil
    } catch {
        return error
    }
}

@Suite("Upload decoders")
struct UploadDecoderTests {
    static let pieces = [1, 2, 3, 7, 64, 1 << 20]  // piece sizes the bodies are fed in

    @Test(arguments: pieces)
    func ndjsonRecordsAndQuarantinedLines(piece: Int) throws {
        let body = Array("{\"a\":1}\r\n\n  \n{\"b\":\"é\"}\nnot json\n[1]\n{\"c\":{\"d\":[true,null]}}".utf8)
        let records = try decode(NDJSONDecoder(), body, piece: piece)
        #expect(records == [
            .event(["a": 1], line: 1),
            .event(["b": "é"], line: 4),
            .malformed(reason: "invalid_json", line: 5, raw: "not json"),
            .malformed(reason: "not_an_object", line: 6, raw: "[1]"),
            .event(["c": ["d": [true, nil]]], line: 7),
        ])
    }

    @Test(arguments: pieces)
    func overlongLinesAreQuarantinedNotBuffered(piece: Int) throws {
        let limits = UploadLimits(maxRecordBytes: 32, maxQuarantinedBytes: 8, maxDepth: 16)
        let long = "{\"x\":\"" + String(repeating: "y", count: 100) + "\"}"
        let body = Array("{\"a\":1}\n\(long)\n{\"b\":2}\n".utf8)
        let records = try decode(NDJSONDecoder(limits: limits), body, piece: piece)
        #expect(records == [
            .event(["a": 1], line: 1),
            .malformed(reason: "record_too_long", line: 2, raw: "{\"x\":\"yy"),
            .event(["b": 2], line: 3),
        ])
    }

    @Test(arguments: pieces)
    func textLines(piece: Int) throws {
        let records = try decode(TextDecoder(), Array("first line\r\n\nsecond \"quoted\"".utf8), piece: piece)
        #expect(records == [.event(["text": "first line"], line: 1), .event(["text": "second \"quoted\""], line: 3)])
        // Tabs, form feeds and ANSI colours are text, not a binary body.
        let coloured = try decode(TextDecoder(), Array("a\tb\u{0C}\n\u{1B}[31mred\u{1B}[0m\n".utf8), piece: piece)
        #expect(coloured == [.event(["text": "a\tb\u{0C}"], line: 1), .event(["text": "\u{1B}[31mred\u{1B}[0m"], line: 2)])
    }

    @Test(arguments: pieces)
    func jsonArrayElements(piece: Int) throws {
        let body = Array(" [ {\"a\":\"x,]}\"} , 42 ,{\"b\":[1,{\"c\":2}]}\n ] \n".utf8)
        let records = try decode(JSONArrayDecoder(), body, piece: piece)
        #expect(records == [
            .event(["a": "x,]}"], line: 1),
            .malformed(reason: "not_an_object", line: 2, raw: "42 "),
            .event(["b": [1, ["c": 2]]], line: 3),
        ])
        #expect(try decode(JSONArrayDecoder(), Array("[]".utf8), piece: piece) == [])
    }

    @Test(arguments: pieces)
    func brokenBodiesNameTheOffset(piece: Int) {
        #expect(failure(JSONArrayDecoder(), Array("[{\"a\":1},{\"b\":".utf8), piece: piece) == UploadError(.truncated, offset: 14, "the body ends before the array does"))
        #expect(failure(JSONArrayDecoder(), Array("[{\"a\":1},,{}]".utf8), piece: piece)?.code == .invalidJSON)
        #expect(failure(JSONArrayDecoder(), Array("[{\"a\":1},,{}]".utf8), piece: piece)?.offset == 9)
        #expect(failure(JSONArrayDecoder(), Array("[{\"a\":1 \"b\":2}]".utf8), piece: piece)?.offset == 8)
        #expect(failure(JSONArrayDecoder(), Array("[{}] x".utf8), piece: piece)?.offset == 5)
        #expect(failure(JSONArrayDecoder(), Array("{\"a\":1}".utf8), piece: piece)?.code == .notAnArray)
        #expect(failure(JSONArrayDecoder(), Array("".utf8), piece: piece)?.code == .empty)
        #expect(failure(JSONArrayDecoder(), Array("[{}}]".utf8), piece: piece)?.offset == 3)
        let deep = Array(("[" + String(repeating: "[", count: 10_000)).utf8)
        #expect(failure(JSONArrayDecoder(), deep, piece: piece)?.code == .tooDeep)
    }

    @Test(arguments: pieces)
    func invalidUTF8AndBinaryAreBodyErrors(piece: Int) {
        var body = Array("{\"a\":1}\n{\"b\":\"".utf8)
        body += [0xC3, 0x28]
        body += Array("\"}\n".utf8)
        #expect(failure(NDJSONDecoder(), body, piece: piece) == UploadError(.invalidUTF8, offset: 14, "the body is not valid UTF-8"))
        #expect(failure(TextDecoder(), [0x61, 0xE2, 0x82], piece: piece) == UploadError(.invalidUTF8, offset: 1, "the body ends inside a UTF-8 sequence"))
        #expect(failure(TextDecoder(), [0x61, 0x00, 0x62], piece: piece)?.code == .binary)
        #expect(failure(JSONArrayDecoder(), [0x5B, 0xED, 0xA0, 0x80, 0x5D], piece: piece)?.offset == 1)  // encoded surrogate
        // Files that are not text: PNG (first byte cannot start UTF-8), gzip and zip (C0 controls).
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00]
        #expect(failure(NDJSONDecoder(), png, piece: piece) == UploadError(.binary, offset: 0, "the body is binary, not text"))
        #expect(failure(CSVDecoder(), [0x1F, 0x8B, 0x08, 0x00], piece: piece) == UploadError(.binary, offset: 0, "the body is binary, not text"))
        #expect(failure(NDJSONDecoder(), Array("PK".utf8) + [0x03, 0x04], piece: piece) == UploadError(.binary, offset: 2, "the body is binary, not text"))
        // Latin-1 text after a valid start is bad text, named at its byte.
        #expect(failure(TextDecoder(), Array("caf".utf8) + [0xE9, 0x0A], piece: piece) == UploadError(.invalidUTF8, offset: 3, "the body is not valid UTF-8"))
    }
}

@Suite("CSV decoder")
struct CSVDecoderTests {
    @Test(arguments: UploadDecoderTests.pieces)
    func recordsQuotesAndLines(piece: Int) throws {
        let body = Array("""
            id,n,when,ok,props\r
            a,1,2026-11-23T01:02:03.456Z,true,"{""k"":""v, w""}"\r
            b,2.5,2026-11-23,false,"multi
            line"
            c,3
            d,4,,TRUE,x"y
            e,-7,2026-11-23 10:00,false,
            """.utf8)
        var decoder = CSVDecoder()
        let records = try decode(into: &decoder, body, piece: piece)
        #expect(records == [
            .event(["id": "a", "n": "1", "when": "2026-11-23T01:02:03.456Z", "ok": "true", "props": "{\"k\":\"v, w\"}"], line: 2),
            .event(["id": "b", "n": "2.5", "when": "2026-11-23", "ok": "false", "props": "multi\nline"], line: 3),
            .malformed(reason: "csv_wrong_cell_count", line: 5, raw: "c,3"),
            .malformed(reason: "csv_bad_quote", line: 6, raw: "d,4,,TRUE,x\"y"),
            .event(["id": "e", "n": "-7", "when": "2026-11-23 10:00", "ok": "false", "props": nil], line: 7),
        ])
        #expect(decoder.schema.map(\.name) == ["id", "n", "when", "ok", "props"])
        #expect(decoder.schema.map(\.type) == [.string, .number, .timestamp, .boolean, .string])
    }

    @Test(arguments: UploadDecoderTests.pieces)
    func brokenBodies(piece: Int) {
        #expect(failure(CSVDecoder(), Array("a,b\n1,\"open\n2,3\n".utf8), piece: piece) == UploadError(.invalidCSV, offset: 6, "a quoted field is not closed before the end of the body"))
        // A bad header is named at the header's first byte, however the body was cut up.
        #expect(failure(CSVDecoder(), Array("a,,b\n1,2,3\n".utf8), piece: piece) == UploadError(.invalidCSV, offset: 0, "the header row has an empty column name"))
        #expect(failure(CSVDecoder(), Array("a,a\n1,2\n".utf8), piece: piece) == UploadError(.invalidCSV, offset: 0, "the header row names a column twice"))
        #expect(failure(CSVDecoder(), Array("\n\nx,x\n".utf8), piece: piece) == UploadError(.invalidCSV, offset: 2, "the header row names a column twice"))
        #expect(failure(CSVDecoder(), Array("".utf8), piece: piece) == UploadError(.empty, offset: 0, "the body is empty"))
        #expect(failure(CSVDecoder(), Array("\n\n".utf8), piece: piece) == UploadError(.invalidCSV, offset: 2, "the body has no header row"))
        #expect(failure(CSVDecoder(), [0x61, 0x0A, 0xFF], piece: piece)?.code == .invalidUTF8)
    }

    @Test func overlongRecordsAreQuarantined() throws {
        var decoder = CSVDecoder(limits: UploadLimits(maxRecordBytes: 16, maxQuarantinedBytes: 6, maxDepth: 8))
        let records = try decoder.decodeAll(Array("a,b\n1,2\n\(String(repeating: "x", count: 50)),3\n4,5\n".utf8))
        #expect(records == [
            .event(["a": "1", "b": "2"], line: 2),
            .malformed(reason: "record_too_long", line: 3, raw: "xxxxxx"),
            .event(["a": "4", "b": "5"], line: 4),
        ])
    }

    @Test func typeInference() {
        func infer(_ cells: [String]) -> ColumnTypeInference.ColumnType {
            var inference = ColumnTypeInference()
            for cell in cells { inference.observe(cell) }
            return inference.type
        }
        #expect(infer([]) == .empty)
        #expect(infer(["", ""]) == .empty)
        #expect(infer(["1", "", "-20"]) == .integer)
        #expect(infer(["1", "2.5", "1e3"]) == .number)
        #expect(infer(["true", "FALSE"]) == .boolean)
        #expect(infer(["2026-01-02", "2026-01-02T03:04:05Z", "2026-01-02 03:04:05.123+02:00"]) == .timestamp)
        #expect(infer(["1", "x"]) == .string)
        #expect(infer(["true", "1"]) == .string)
        #expect(infer(["nan"]) == .string)
        #expect(infer(["2026-13"]) == .string)
        #expect(infer(["+5", "-9223372036854775808", "9223372036854775807"]) == .integer)
        #expect(infer(["9223372036854775808"]) == .number)
        #expect(infer([".5", "5.", "-1.5E+3", "1e-400"]) == .number)
        #expect(infer(["1e400"]) == .string)
        for text in ["+", "-", ".", "e5", "1e", "1e+", "1.2.3", "--1", "1-", "+.e1"] {
            #expect(infer([text]) == .string, "\(text)")
        }
    }

    @Test func numericCellsAreTheOnesIntAndDoubleRead() {
        // Every cell of up to 4 characters from the characters of numbers, and longer random
        // ones: the byte-level grammar agrees with Int64(_:) and Double(_:) on each.
        let alphabet = Array("0159+-.eE".utf8)
        var cells: [[UInt8]] = [], level: [[UInt8]] = [[]]
        for _ in 1...4 {
            level = level.flatMap { cell in alphabet.map { cell + [$0] } }
            cells += level
        }
        var state: UInt64 = 0x5EED  // SplitMix64: the same cells on every run
        func next() -> Int {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int(truncatingIfNeeded: (z ^ (z >> 31)) >> 1)
        }
        for _ in 0..<20_000 {
            cells.append((0..<(5 + next() % 20)).map { _ in alphabet[next() % alphabet.count] })
        }
        cells.append(Array(String(repeating: "9", count: 308).utf8))
        cells.append(Array(String(repeating: "9", count: 309).utf8))
        cells.append(Array((String(repeating: "9", count: 309) + ".5").utf8))
        var checked = 0
        for cell in cells where !cell.isEmpty {
            let text = String(decoding: cell, as: UTF8.self)
            let expected: ColumnTypeInference.ColumnType? =
                Int64(text) != nil ? .integer : (Double(text).map { $0.isFinite } == true ? .number : nil)
            let got = cell.withUnsafeBytes { ColumnTypeInference.numericKind(of: $0) }
            #expect(got == expected, "\(text)")
            checked += 1
        }
        #expect(checked > 27_000)
    }
}

@Suite("XML decoder")
struct XMLDecoderTests {
    @Test(arguments: UploadDecoderTests.pieces)
    func eventsFromElements(piece: Int) throws {
        let body = Array("""
            <?xml version="1.0" encoding="UTF-8"?>
            <!-- an upload -->
            <events>
              <event id="1"><metadata><event_id>a&amp;b</event_id><n>42</n></metadata><tags><tag>x</tag><tag>y</tag></tags><note><![CDATA[<raw> & text]]></note><empty/></event>
              <event><text>caf&#233; &#x1F600; &lt;ok&gt; &quot;q&quot; &apos;s&apos;</text></event>
            </events>

            """.utf8)
        let records = try decode(XMLDecoder(), body, piece: piece)
        #expect(records == [
            .event([
                "@id": "1",
                "metadata": ["event_id": "a&b", "n": "42"],
                "tags": ["tag": ["x", "y"]],
                "note": "<raw> & text",
                "empty": "",
            ], line: 1),
            .event(["text": "café 😀 <ok> \"q\" 's'"], line: 2),
        ])
    }

    @Test func entityDeclarationsAreRefused() {
        let laughs = """
            <?xml version="1.0"?>
            <!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
            <events><event><a>&lol2;</a></event></events>
            """
        #expect(failure(XMLDecoder(), Array(laughs.utf8)) == UploadError(.xmlDTDRefused, offset: 22, "document type declarations (and so entity declarations) are refused"))
        let external = "<!DOCTYPE e [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><events><event><a>&x;</a></event></events>"
        #expect(failure(XMLDecoder(), Array(external.utf8))?.code == .xmlDTDRefused)
        #expect(failure(XMLDecoder(), Array("<events><event><a>&x;</a></event></events>".utf8)) == UploadError(.invalidXML, offset: 18, "unknown entity (only the predefined ones are understood)"))
    }

    @Test(arguments: UploadDecoderTests.pieces)
    func malformedBodiesNameTheOffset(piece: Int) {
        #expect(failure(XMLDecoder(), Array("<events><event><a>1</b></event></events>".utf8), piece: piece) == UploadError(.invalidXML, offset: 19, "the end tag does not match the open element"))
        #expect(failure(XMLDecoder(), Array("<events><event><a>1</a></event>".utf8), piece: piece)?.code == .truncated)
        #expect(failure(XMLDecoder(), Array("<events><event><a>1</a></event></events><more/>".utf8), piece: piece)?.code == .invalidXML)
        #expect(failure(XMLDecoder(), Array("<events>stray<event/></events>".utf8), piece: piece) == UploadError(.invalidXML, offset: 8, "text between events"))
        #expect(failure(XMLDecoder(), Array("<events><event a=1/></events>".utf8), piece: piece)?.code == .invalidXML)
        #expect(failure(XMLDecoder(), Array("".utf8), piece: piece)?.code == .empty)
        #expect(failure(XMLDecoder(), Array("  \n".utf8), piece: piece)?.code == .invalidXML)
        #expect(failure(XMLDecoder(), Array("not xml at all".utf8), piece: piece)?.offset == 0)
        #expect(failure(XMLDecoder(), [0x3C, 0x65, 0x3E, 0xFF], piece: piece)?.code == .invalidUTF8)
    }

    @Test func oversizedAndDeepEventsAreQuarantined() throws {
        var decoder = XMLDecoder(limits: UploadLimits(maxRecordBytes: 64, maxQuarantinedBytes: 16, maxDepth: 3))
        let big = "<event><a>" + String(repeating: "z", count: 200) + "</a></event>"
        let deep = "<event><a><b><c><d>1</d></c></b></a></event>"
        let records = try decoder.decodeAll(Array("<events><event><a>1</a></event>\(big)\(deep)<event><b>2</b></event></events>".utf8))
        #expect(records == [
            .event(["a": "1"], line: 1),
            .malformed(reason: "record_too_long", line: 2, raw: ""),
            .malformed(reason: "too_deep", line: 3, raw: ""),
            .event(["b": "2"], line: 4),
        ])
    }

    @Test(arguments: UploadDecoderTests.pieces)
    func aByteOrderMarkIsSkipped(piece: Int) throws {
        let mark: [UInt8] = [0xEF, 0xBB, 0xBF]
        #expect(try decode(ByteOrderMarkSkipping(NDJSONDecoder()), mark + Array("{\"a\":1}\n".utf8), piece: piece) == [.event(["a": 1], line: 1)])
        #expect(try decode(ByteOrderMarkSkipping(CSVDecoder()), mark + Array("event_id,n\ne1,2\n".utf8), piece: piece)
            == [.event(["event_id": "e1", "n": "2"], line: 2)])
        // Not a mark: every byte reaches the decoder, even a body shorter than a mark.
        #expect(try decode(ByteOrderMarkSkipping(TextDecoder()), Array("ab".utf8), piece: piece) == [.event(["text": "ab"], line: 1)])
        #expect(failure(ByteOrderMarkSkipping(TextDecoder()), [0xEF, 0xBB, 0x41], piece: piece) == UploadError(.invalidUTF8, offset: 0, "the body is not valid UTF-8"))
        // Offsets stay offsets in the body as sent.
        #expect(failure(ByteOrderMarkSkipping(NDJSONDecoder()), mark + Array("{\"a\":\"".utf8) + [0xFF], piece: piece)?.offset == 9)
        #expect(failure(ByteOrderMarkSkipping(JSONArrayDecoder()), mark, piece: piece)?.code == .empty)
        // A mark later in the body is text like any other.
        #expect(try decode(ByteOrderMarkSkipping(TextDecoder()), Array("a\n".utf8) + mark + Array("b".utf8), piece: piece)
            == [.event(["text": "a"], line: 1), .event(["text": "\u{FEFF}b"], line: 2)])
    }

    @Test func deepLinesAreQuarantinedAsTooDeep() throws {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        let line = "{\"a\":" + deep + "}"
        let records = try decode(NDJSONDecoder(), Array((line + "\n{\"b\":1}\n").utf8), piece: 4096)
        #expect(records.count == 2)
        guard case .malformed(let reason, let number, let raw) = records.first else { Issue.record("not quarantined: \(records)"); return }
        #expect(reason == "too_deep")
        #expect(number == 1)
        #expect(raw.utf8.count == UploadLimits().maxQuarantinedBytes)
        #expect(records.last == .event(["b": 1], line: 2))
    }

    /// Found by the fuzz targets: a body broken twice (its structure, then its UTF-8) was
    /// reported by its UTF-8 when it came whole and by its structure when it came in pieces.
    /// The first error is reported now, however the body is cut.
    @Test(arguments: UploadDecoderTests.pieces)
    func theFirstErrorWinsHoweverTheBodyIsCut(piece: Int) {
        #expect(failure(JSONArrayDecoder(), [0x41, 0xC0, 0x2A, 0x0E], piece: piece) == UploadError(.notAnArray, offset: 0, "the body is not a JSON array"))
        #expect(failure(XMLDecoder(), [0x41, 0x41, 0xFD], piece: piece)?.code == .invalidXML)
        #expect(failure(XMLDecoder(), [0x41, 0x41, 0xFD], piece: piece)?.offset == 0)
        let csv = Array(repeating: UInt8(0x09), count: 23) + [0x0A] + Array(repeating: 0x09, count: 17) + [0x0A, 0xFF, 0xFF]
        #expect(failure(CSVDecoder(), csv, piece: piece) == UploadError(.invalidCSV, offset: 0, "the header row has an empty column name"))
        #expect(failure(XMLDecoder(), Array("<events><event><a>&&foo;</a></event></events>".utf8), piece: piece)
            == UploadError(.invalidXML, offset: 18, "an '&' that starts no entity"))
        // Bad UTF-8 first: that is the error, whatever follows.
        #expect(failure(JSONArrayDecoder(), [0xC3, 0x28, 0x7B], piece: piece) == UploadError(.invalidUTF8, offset: 0, "the body is not valid UTF-8"))
        #expect(failure(JSONArrayDecoder(), Array("[\"".utf8) + [0xC3, 0x28] + Array("\"".utf8), piece: piece) == UploadError(.invalidUTF8, offset: 2, "the body is not valid UTF-8"))
        // A character cut by a piece boundary reaches the decoder whole.
        #expect((try? decode(NDJSONDecoder(), Array("{\"k\":\"\u{1F600}é\"}\n".utf8), piece: piece)) == [.event(["k": "\u{1F600}é"], line: 1)])
    }
}
