@testable import Sluice
@testable import SluiceFunctions
import Testing

/// Personal data in a sample's keys never names a field or a column (issue 31, finding 10): the
/// keys of NDJSON and JSON records are masked before detection, as CSV headers are.
@Suite("Detection masks keys")
struct DatasetDetectionMaskingTests {
    @Test func anEmailUsedAsAKeyNeverBecomesAField() throws {
        let records: [JSONValue] = [
            ["id": "r-1", "alice@example.com": "yes", "call": ["+44 20 7946 0958": 1]],
            ["id": "r-2", "alice@example.com": "no", "call": ["+44 20 7946 0958": 2]],
        ]
        // The masked key (`<EMAIL>`) is no column name: the sample is refused naming only the
        // masked form, as a CSV header holding an address is.
        let error = try #require(throws: DatasetError.self) {
            try DatasetDetector.detect(name: "votes", records: records, textCells: false, key: ["id"], time: nil)
        }
        #expect(error.code == .badName)
        #expect(error.key == "fields[1].column")
        #expect(error.message.contains("<email>"), "\(error)")
        #expect(!error.description.contains("alice"), "\(error)")
        // Without the masking the raw address is what the answer would quote.
        let raw = try #require(throws: DatasetError.self) {
            try DatasetDetector.detect(name: "votes", records: records, textCells: false, key: ["id"], time: nil, keyMasker: nil)
        }
        #expect(raw.description.contains("alice@example"), "\(raw)")
    }

    @Test func keysWithoutPersonalDataAreKept() throws {
        let spec = try DatasetDetector.detect(name: "readings", records: [["sensor_id": "s-1", "reading": ["celsius": 21.5]]],
                                              textCells: false, key: nil, time: nil)
        #expect(spec.fields.map(\.path) == ["sensor_id", "reading.celsius"])
    }
}
