import SluicePostgres
import Testing

@Suite("PostgreSQL statements: interpolations are parameters")
struct PostgresQueryTests {
    @Test func everyInterpolatedValueIsBound() {
        let hostile = "x'); DROP TABLE jobs; --"
        let limit = 10
        let missing: String? = nil
        let query: PostgresQuery = "SELECT * FROM jobs WHERE id = \(hostile)::uuid AND n < \(limit) AND e IS NOT DISTINCT FROM \(missing)"
        #expect(query.sql == "SELECT * FROM jobs WHERE id = $1::uuid AND n < $2 AND e IS NOT DISTINCT FROM $3")
        #expect(query.binds == [hostile, "10", nil])
        #expect(query.description == query.sql)  // a statement prints without its values
        #expect(query.invalid == nil)
    }

    @Test func aLiteralBindsNothing() {
        let query: PostgresQuery = "SELECT 1"
        #expect(query.sql == "SELECT 1")
        #expect(query.binds.isEmpty)
    }

    @Test func fragmentsAreRenumberedWhenComposed() {
        let status = "failed", before = 7
        let conditions: [PostgresQuery] = ["status = \(status)", "id < \(before)::bigint", "true"]
        let where_ = conditions.joined(separator: " AND ")
        let query: PostgresQuery = "SELECT \(Self.columns) FROM t WHERE owner = \("me") AND \(where_) LIMIT \(3)"
        #expect(query.sql == "SELECT a, b FROM t WHERE owner = $1 AND status = $2 AND id < $3::bigint AND true LIMIT $4")
        #expect(query.binds == ["me", "failed", "7", "3"])
        var appended: PostgresQuery = "UPDATE t SET a = \(1)"
        appended.append(", b = \(2) WHERE c = \(3)")
        #expect(appended.sql == "UPDATE t SET a = $1, b = $2 WHERE c = $3")
        #expect(("x = \(1)" as PostgresQuery) + (" AND y = \(2)" as PostgresQuery) == "x = \(1) AND y = \(2)")
        #expect([PostgresQuery]().joined(separator: ", ").sql == "")
    }

    static let columns: PostgresQuery = "a, b"

    @Test func identifiersAreQuotedAndNeverBound() {
        let query: PostgresQuery = "CREATE TABLE \(identifier: "orders") (\(identifier: #"we"ird"#) int)"
        #expect(query.sql == #"CREATE TABLE "orders" ("we""ird" int)"#)
        #expect(query.binds.isEmpty)
        #expect(query.invalid == nil)
        #expect(("SELECT \(identifier: "")" as PostgresQuery).invalid != nil)
        #expect(("SELECT \(identifier: "a\u{0}b")" as PostgresQuery).invalid != nil)
        #expect(("SELECT \(identifier: String(repeating: "a", count: 63))" as PostgresQuery).invalid == nil)
        #expect(("SELECT \(identifier: String(repeating: "a", count: 64))" as PostgresQuery).invalid != nil)
        // An invalid fragment makes the whole statement invalid.
        let composed: PostgresQuery = "SELECT 1 FROM \(("\(identifier: "")" as PostgresQuery))"
        #expect(composed.invalid != nil)
    }

    @Test func valuesBindInPostgreSQLTextForm() {
        let query: PostgresQuery = "SELECT \(true), \(false), \(Int64(-5)), \(Int32(7)), \(2.5), \(["a", #"b"c"#, #"d\e"#])::text[], \([1, 2])::int[], \([nil, "x"] as [String?])::text[]"
        #expect(query.binds == ["true", "false", "-5", "7", "2.5", #"{"a","b\"c","d\\e"}"#, #"{"1","2"}"#, #"{NULL,"x"}"#])
    }

    @Test func arrayLiteralsQuoteEscapeAndReadBack() {
        #expect(PostgresArray.literal([]) == "{}")
        #expect(PostgresArray.literal(["a", #"say "hi""#, #"back\slash"#, ""]) == #"{"a","say \"hi\"","back\\slash",""}"#)
        #expect(PostgresArray.literal([nil, "NULL", #"\x01ff"#]) == #"{NULL,"NULL","\\x01ff"}"#)
        // What PostgreSQL answers for text[] reads back to the same strings.
        #expect((try? [String](postgresColumn: #"{"a","say \"hi\"","back\\slash",""}"#)) == ["a", #"say "hi""#, #"back\slash"#, ""])
        #expect((try? [Int64](postgresColumn: "{1,-2,3}")) == [1, -2, 3])
        #expect((try? [Int64](postgresColumn: "{1,x}")) == nil)
    }

    @Test func rowsDecodeTypedColumnsAndNameTheColumnThatFails() throws {
        let rows = PostgresRows(columns: ["id", "n", "ok", "note", "tags"],
                                rows: [["a", "41", "t", nil, #"{"x","y"}"#], ["b", "-1", "f", "hi", "{}"]])
        let decoded = try rows.decode((String, Int, Bool, String?, [String]).self)
        #expect(decoded.count == 2)
        #expect(decoded[0].0 == "a" && decoded[0].1 == 41 && decoded[0].2 && decoded[0].3 == nil && decoded[0].4 == ["x", "y"])
        #expect(decoded[1].0 == "b" && decoded[1].1 == -1 && !decoded[1].2 && decoded[1].3 == "hi" && decoded[1].4 == [])
        #expect(try rows[0].decode(Int.self, column: "n") == 41)
        #expect(try rows.scalar(String.self) == "a")
        #expect(try PostgresRows(columns: ["n"], rows: []).scalar(Int.self) == nil)
        #expect(try PostgresRows(columns: ["n"], rows: [["1"], ["2"]]).decode(Int.self) == [1, 2])

        // A NULL where the type has none, a value of another type, a wrong column count:
        // errors name the column, never the value.
        #expect(throws: PostgresError(.decoding, "column note is NULL, not String")) {
            try rows.decode((String, Int, Bool, String, [String]).self)
        }
        #expect(throws: PostgresError(.decoding, "column id is not Int")) {
            try rows[0].decode(Int.self, at: 0)
        }
        #expect(throws: PostgresError(.decoding, "the row has 5 columns, not 2")) {
            try rows[0].decode((String, Int).self)
        }
        #expect(throws: PostgresError(.decoding, "the row has no column missing")) {
            try rows[0].decode(Int.self, column: "missing")
        }
    }
}
