import Sluice
import SluicePrivacy
import SluiceUploads
import Testing

/// A CSV's header is masked before the events or the schema hold it: a file without a header
/// row has its first record taken as one.
@Suite("CSV header masking")
struct CSVHeaderMaskingTests {
    static let masker = PIIMasker(operators: [.email: .replace, .phone: .mask, .card: .mask], key: [])

    @Test(arguments: UploadDecoderTests.pieces)
    func aHeaderWithPersonalDataIsMasked(piece: Int) throws {
        var mapping = CSVColumnMapping()
        mapping.headerMasking = { Self.masker.maskKeys($0) }
        // The first data row taken as the header: an address (with dots, which would nest), a
        // phone number, a card number, and two addresses that mask alike.
        let csv = """
            e1,carol.header@example.com,+44 20 7946 0958,4111111111111111,a@example.com,b@example.com\r
            e2,x,y,z,1,2\r

            """
        var decoder = CSVDecoder(mapping: mapping)
        let records = try decode(into: &decoder, Array(csv.utf8), piece: piece)
        #expect(decoder.schema.map(\.name) == ["e1", "<EMAIL>", "+** ** **** 0958", "************1111", "<EMAIL>~2", "<EMAIL>~3"])
        let event = try #require(try records.first?.eventValue())
        #expect(event == ["e1": "e2", "<EMAIL>": "x", "+** ** **** 0958": "y", "************1111": "z", "<EMAIL>~2": "1", "<EMAIL>~3": "2"])
        #expect(!event.serializedString.contains("example") && !event.serializedString.contains("4111"))
    }

    @Test func withoutAMaskerTheHeaderIsKept() throws {
        var decoder = CSVDecoder(mapping: CSVColumnMapping())
        _ = try decode(into: &decoder, Array("event_id,x@example.com\ne1,v\n".utf8), piece: 1 << 20)
        #expect(decoder.schema.map(\.name) == ["event_id", "x@example.com"])
    }
}
