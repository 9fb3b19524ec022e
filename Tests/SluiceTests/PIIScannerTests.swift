import Logging
@testable import Sluice
@testable import SluicePrivacy
import Testing

@Suite("PII detectors")
struct PIIScannerTests {
    let scanner = PIIScanner()

    /// The pieces the scanner finds in `text`, as (kind, text).
    func found(_ text: String) -> [(PIIEntity, String)] {
        let bytes = Array(text.utf8)
        return scanner.matches(in: text).map { ($0.entity, String(decoding: bytes[$0.range], as: UTF8.self)) }
    }

    func expectFound(_ text: String, _ expected: [(PIIEntity, String)], sourceLocation: SourceLocation = #_sourceLocation) {
        let actual = found(text)
        #expect(actual.map(\.0) == expected.map(\.0) && actual.map(\.1) == expected.map(\.1),
                "\(text): \(actual)", sourceLocation: sourceLocation)
    }

    @Test func emails() {
        expectFound("contact me at user123@example.com please", [(.email, "user123@example.com")])
        expectFound("<first.last+tag@mail.example.co.uk>.", [(.email, "first.last+tag@mail.example.co.uk")])
        expectFound("a@b.io and .x_y-z@sub-domain.example.org", [(.email, "a@b.io"), (.email, "x_y-z@sub-domain.example.org")])
        for miss in ["user@localhost", "a@b.c", "@example.com", "foo@bar.123", "mail me @ home", "x@.com"] {
            expectFound(miss, [])
        }
    }

    @Test func phoneNumbers() {
        for phone in ["+1-555-123-4567", "+44 20 7946 0958", "+4915112345678", "(555) 123-4567", "555-123-4567", "555.123.4567",
                      "1 555 123 4567", "020 7946 0958", "030 12345678"] {
            expectFound("call \(phone) now", [(.phone, phone)])
        }
        // Too short, too long, without separators, a date, a decimal, a count.
        for miss in ["+123 45", "+1234567890123456", "5551234567", "2024-01-15", "3.14159", "12 345 items", "123-456"] {
            expectFound("see \(miss) here", [])
        }
    }

    @Test func cardNumbersOnlyWhenLuhnValid() {
        for card in ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "378282246310005", "5555 5555 5555 4444"] {
            expectFound("paid with \(card).", [(.card, card)])
        }
        // The same numbers with the last digit changed fail Luhn and are left alone.
        for miss in ["4111 1111 1111 1112", "4111111111111112", "378282246310006", "5555 5555 5555 4445"] {
            expectFound("paid with \(miss).", [])
        }
        expectFound("order A4111111111111111 and 4111111111111111B", [])  // glued to letters: ids, not cards
    }

    @Test func ibansOnlyWhenMod97Valid() {
        for iban in ["DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606",
                     "NL91 ABNA 0417 1643 00"] {
            expectFound("pay to \(iban) today", [(.iban, iban)])
        }
        for miss in ["DE89 3704 0044 0532 0130 01", "GB82WEST12345698765433", "DE89 3704"] {
            #expect(!found("pay to \(miss) today").contains { $0.0 == .iban }, "\(miss)")
        }
    }

    @Test func ipAddresses() {
        expectFound("from 203.0.113.5, then 10.0.0.1.", [(.ipv4, "203.0.113.5"), (.ipv4, "10.0.0.1")])
        for address in ["2001:db8::1", "fe80::1ff:fe23:4567:890a", "::ffff:192.0.2.128", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"] {
            expectFound("peer [\(address)]:", [(.ipv6, address)])
        }
        for miss in ["256.1.1.1", "1.2.3", "1.2.3.4.5", "v1.2.3.4", "at 12:30:45", "mac 00:1A:2B:3C:4D:5E", "2001:db8:::1", "a::b::c"] {
            expectFound(miss, [])
        }
    }

    @Test func socialSecurityNumbers() {
        expectFound("ssn 123-45-6789.", [(.ssn, "123-45-6789")])
        for miss in ["000-12-3456", "666-12-3456", "900-12-3456", "123-00-6789", "123-45-0000", "123456789", "123 45 6789"] {
            #expect(!found("ssn \(miss)").contains { $0.0 == .ssn }, "\(miss)")
        }
    }

    @Test func identifiersTimesAndPlainTextAreLeftAlone() {
        for text in ["2026-11-23T15:04:05.123Z", "550e8400-e29b-41d4-a716-446655440000", "version 1.0.0", "u-42", "s-123456",
                     "/p/123", "page_view", "Zürich 8001", "€1,234,567.89", "", "no digits at all"] {
            expectFound(text, [])
        }
    }

    /// Identifiers and decimals that happen to hold the digits of a phone or card number are
    /// neither (issue 31, finding 13): a UUID's digit groups are glued to its hex groups, and dots
    /// in two groups are a decimal (a latitude), never a phone written with dots.
    @Test func uuidsAndDecimalsAreNotPhoneOrCardNumbers() {
        for text in ["84294841-2216-8133-fdfb-1208d52c7ec4", "fdfb1208-8429-4841-2216-813312345678", "ab12-5551234567",
                     "31.95376472", "-115.1234567", "2345.678901", "lat 31.95376472, lon -98.12345678", "order-4111111111111111",
                     "84294841-2216-8133-4111-x", "2026-01-01 10:00:00", "on 2012-01-01 09:30 UTC"] {
            expectFound(text, [])
        }
        // Still found: the same digits standing alone, and phones written with dots in three groups.
        expectFound("call 555.123.4567 now", [(.phone, "555.123.4567")])
        expectFound("paid 4111-1111-1111-1111 now", [(.card, "4111-1111-1111-1111")])
        expectFound("call 555-123-4567-", [(.phone, "555-123-4567")])
    }

    @Test func everyKindInOneText() {
        let text = "mail x@example.com, phone +1-555-123-4567, card 4111 1111 1111 1111, iban GB82WEST12345698765432, " +
            "ip 203.0.113.9 / 2001:db8::7, ssn 123-45-6789"
        #expect(found(text).map(\.0) == [.email, .phone, .card, .iban, .ipv4, .ipv6, .ssn])
    }
}

@Suite("PII masking")
struct PIIMaskerTests {
    let key = Array("a pseudonym key of at least 16 bytes".utf8)

    @Test func eachOperator() {
        let text = "card 4111 1111 1111 1111, mail a.b@example.com!"
        #expect(PIIMasker(operators: [.card: .mask, .email: .mask], key: key).mask(text)
            == "card **** **** **** 1111, mail *.*@******e.com!")
        #expect(PIIMasker(operators: [.card: .redact, .email: .redact], key: key).mask(text) == "card , mail !")
        #expect(PIIMasker(operators: [.card: .replace, .email: .replace], key: key).mask(text) == "card <CARD>, mail <EMAIL>!")
        // Only the kinds named are looked for.
        #expect(PIIMasker(operators: [.email: .replace], key: key).mask(text) == "card 4111 1111 1111 1111, mail <EMAIL>!")
    }

    @Test func pseudonymsAreKeyedStableAndNeverDetectedAgain() {
        let masker = PIIMasker(operators: [.email: .pseudonym, .card: .pseudonym], key: key)
        let once = masker.mask("x@example.com and 4111111111111111")
        #expect(once == masker.mask("x@example.com and 4111111111111111"))
        #expect(once.hasPrefix("<EMAIL:") && once.contains(" and <CARD:"))
        #expect(!once.contains("example") && !once.contains("4111") && !once.contains { $0.isNumber })
        #expect(masker.mask(once) == once)
        #expect(PIIScanner().matches(in: once).isEmpty)
        let other = PIIMasker(operators: [.email: .pseudonym, .card: .pseudonym], key: Array("another key of sixteen bytes or more".utf8))
        #expect(other.mask("x@example.com and 4111111111111111") != once)
        #expect(masker.mask("y@example.com") != masker.mask("x@example.com"))

        let user = masker.pseudonymousUserID("u-42")
        #expect(user == masker.pseudonymousUserID("u-42") && user != masker.pseudonymousUserID("u-43"))
        #expect(user.utf8.count == 34 && PIIMasker.isPseudonymousUserID(user) && !PIIMasker.isPseudonymousUserID("u-42"))
    }

    @Test func everyStringKeyAndNumberAtAnyDepthIsMasked() {
        let masker = PIIMasker(operators: Dictionary(uniqueKeysWithValues: PIIEntity.allCases.map { ($0, PIIOperator.replace) }), key: key)
        let event: JSONValue = [
            "note": "contact me at user5@example.com please",
            "nested": ["list": ["+1-555-123-4567", 42, true, ["ip": "203.0.113.7", "cc": 4111111111111111]]],
            "x@example.com": "key masked",
            "by phone": ["+44 20 7946 0958": 1],
        ]
        let expected: JSONValue = [
            "note": "contact me at <EMAIL> please",
            "nested": ["list": ["<PHONE>", 42, true, ["ip": "<IPV4>", "cc": "<CARD>"]]],
            "<EMAIL>": "key masked",
            "by phone": ["<PHONE>": 1],
        ]
        #expect(masker.mask(event) == expected)
        // Nothing to mask: the very same value (no copy).
        let clean: JSONValue = ["a": ["b": 1, "c": "text"], "n": 1733000000000]
        #expect(masker.mask(clean) == clean)
    }

    /// A JSON number is a card when its digits are 13–19, Luhn-valid, led by 2–6; a phone when
    /// they are a North American number (10, or 11 led by 1) or E.164 without `+` (11–15 led by
    /// 2–9). Timestamps, counters and amounts stay numbers.
    @Test func numbersThatAreCardOrPhoneNumbers() {
        let masker = PIIMasker(operators: PIIMaskMiddleware.defaultOperators, key: key)
        let cases: [(JSONValue, JSONValue)] = [
            (4111111111111111, "************1111"),         // Visa test number
            (5555555555554444, "************4444"),         // Mastercard
            (378282246310005, "***********0005"),           // Amex, 15 digits
            (-4111111111111111, "************1111"),        // the sign does not hide it
            (.double(4111111111111111), "************1111"), // written as 4111111111111111.0
            (14155552671, "*******2671"),                   // +1 415 555 2671 without +
            (4155552671, "******2671"),                     // national (NANP)
            (4915112345678, "*********5678"),               // +49 151 12345678 without +
            (33612345678, "*******5678"),                   // +33 6 12 34 56 78 without +
            (447911123456, "********3456"),                 // +44 7911 123456 without +
        ]
        for (number, masked) in cases {
            #expect(masker.mask(["n": number]) == ["n": masked], "\(number)")
        }
        let kept: [JSONValue] = [
            1733000000000,        // epoch milliseconds (Luhn-valid: 13 digits led by 1)
            1733000000000003,     // epoch microseconds
            1733000000,           // epoch seconds
            4111111111111112,     // 16 digits, not Luhn-valid: neither a card nor a phone
            1234567890,           // 10 digits led by 1
            5551234567,           // exchange 123: not a North American number
            42, 0, -17, 999_999_999, 1_000_000_000_000_000_000,
            .double(4111111111111111.5), .double(3.14159), .double(1e300),
            "5551234567",         // the text rules for strings are unchanged
        ]
        for value in kept {
            #expect(masker.mask(["n": value]) == ["n": value], "\(value)")
        }
        // Each operator on a number; kinds turned off are left alone.
        #expect(PIIMasker(operators: [.card: .replace], key: key).mask(4111111111111111) == "<CARD>")
        #expect(PIIMasker(operators: [.card: .redact], key: key).mask(4111111111111111) == "")
        let pseudonym = PIIMasker(operators: [.card: .pseudonym], key: key)
        #expect(pseudonym.mask(4111111111111111) == .string(pseudonym.mask("4111111111111111")), "the number's pseudonym is its text's")
        #expect(PIIMasker(operators: [.email: .replace], key: key).mask(4111111111111111) == 4111111111111111)
        #expect(PIIMasker(operators: [.card: .mask], key: key).mask(14155552671) == 14155552671)
    }

    /// Masked keys stay unique: one that meets a kept key or an earlier masked key gets the first
    /// free `~N`, in member order, whatever the keys were.
    @Test func maskedKeysThatCollideGetASuffix() {
        let replace = PIIMasker(operators: [.email: .replace], key: key)
        let object = try! JSONParser().parse(#"{"a@example.com": 1, "<EMAIL>": 2, "b@example.com": 3, "<EMAIL>~2": 4, "c@example.com": 5}"#)
        let masked = replace.mask(object)
        #expect(masked.objectValue?.keys == ["<EMAIL>~3", "<EMAIL>", "<EMAIL>~4", "<EMAIL>~2", "<EMAIL>~5"])
        let values: [JSONValue]? = masked.objectValue.map { members in (0..<5).map { i in members[members.keys[i]]! } }
        #expect(values == [1, 2, 3, 4, 5])
        #expect(replace.mask(object) == masked, "deterministic")
        let redact = PIIMasker(operators: [.card: .redact], key: key)
        #expect(redact.mask(try! JSONParser().parse(#"{"4111111111111111": "a", "5555555555554444": "b"}"#)).objectValue?.keys == ["", "~2"])
        // Thousands of colliding keys: each gets its own suffix.
        var many = JSONObject()
        for i in 0..<3000 { many["user\(i)@example.com"] = .int(Int64(i)) }
        let keys = replace.mask(.object(many)).objectValue?.keys ?? []
        #expect(keys.count == 3000 && Set(keys).count == 3000 && keys[0] == "<EMAIL>" && keys[2999] == "<EMAIL>~3000")
    }
}

@Suite("pii-mask middleware")
struct PIIMaskMiddlewareTests {
    let logger = Logger(label: "test")
    let key = "a pseudonym key of at least 16 bytes"

    func manifest(_ config: JSONValue = [:]) -> Manifest {
        Manifest(name: "f", handler: "h", triggers: [.stream("f")], middleware: ["pii-mask"], config: config, file: "f.yaml")
    }

    func setup(_ manifest: Manifest, key: String?) -> FunctionSetup<NoDependencies> {
        var configuration = RuntimeConfiguration()
        configuration.pseudonymKey = key
        return FunctionSetup(manifest: manifest, logger: logger, configuration: configuration, dependencies: NoDependencies(), registry: FunctionRegistry())
    }

    /// The function behind the middleware forwards what it was given.
    func run(_ events: [JSONValue], config: JSONValue = [:]) async throws -> [JSONValue] {
        var registry = FunctionRegistry<NoDependencies>()
        registry.registerPIIMask()
        registry.register("h") { _ in ClosureEventFunction { chunk, _ in chunk.events.map { .forward($0) } } }
        let m = manifest(config)
        let function = try await registry.makeHandler(setup(m, key: key)) as! any EventFunction
        let outcomes = try await FunctionInvoker(manifest: m, function: function, logger: logger)
            .invoke(Chunk(id: "1-0", events: events.map(Event.init)), attempt: 1)
        return outcomes.map { outcome -> JSONValue in
            guard case .forward(let event, _) = outcome else { return .null }
            return event.value
        }
    }

    @Test func theFunctionSeesPseudonymousUsersAndMaskedStrings() async throws {
        let masker = PIIMasker(operators: PIIMaskMiddleware.defaultOperators, key: Array(key.utf8))
        let event: JSONValue = [
            "user": ["id": "u-42", "attributes": ["plan": "pro"]],
            "payload": ["properties": [
                "email": "user7@example.com", "phone": "+1-555-123-4567", "card": "4111 1111 1111 1111", "ip": "203.0.113.9",
                "note": "contact me at user7@example.com please", "ssn": "ssn 123-45-6789", "page": "/p/12",
            ]],
        ]
        let out = try await run([event, ["user_id": "u-42"]])
        let user = masker.pseudonymousUserID("u-42")
        #expect(out[0]["user"]?["id"] == .string(user) && out[1]["user_id"] == .string(user))
        let email = masker.mask("user7@example.com")
        #expect(email.hasPrefix("<EMAIL:"))
        #expect(out[0]["payload"]?["properties"] == [
            "email": .string(email), "phone": "+*-***-***-4567", "card": "**** **** **** 1111", "ip": "<IPV4>",
            "note": .string("contact me at \(email) please"), "ssn": "ssn ", "page": "/p/12",
        ])
        #expect(out[0]["user"]?["attributes"] == ["plan": "pro"])
        // A pseudonym is not pseudonymised again by a later stage.
        #expect(try await run([["user_id": .string(user)]]) == [["user_id": .string(user)]])
    }

    /// A numeric user id is pseudonymised as its decimal text (the number 42 and the string
    /// "42" are one user), before the number rules could take it for a phone or card number.
    @Test func numericUserIDsArePseudonymised() async throws {
        let masker = PIIMasker(operators: [:], key: Array(key.utf8))
        let out = try await run([["user": ["id": 42]], ["user_id": 4111111111111111], ["user": ["id": "42"]], ["user_id": 4155552671]])
        #expect(out[0]["user"]?["id"] == .string(masker.pseudonymousUserID("42")))
        #expect(out[1]["user_id"] == .string(masker.pseudonymousUserID("4111111111111111")))
        #expect(out[2]["user"]?["id"] == out[0]["user"]?["id"])
        #expect(out[3]["user_id"] == .string(masker.pseudonymousUserID("4155552671")))
        let mask = try PIIMaskMiddleware(manifest: manifest(), pseudonymKey: key)
        #expect(mask.subjects(of: ["user": ["id": 42], "user_id": "42"]) == [masker.pseudonymousUserID("42")])
        #expect(mask.subjects(of: ["user": ["id": true], "user_id": .null]) == [])
        let given = masker.pseudonymousUserID("u-1")
        #expect(mask.subjects(of: ["user_id": .string(given)]) == [given], "a pseudonym is its own subject")
    }

    /// The invoker exposes a function's pii-mask, which the stream trigger applies to what it
    /// dead-letters; a function without one has none.
    @Test func theInvokerFindsThePIIMaskInTheChain() async throws {
        var registry = FunctionRegistry<NoDependencies>()
        registry.registerPIIMask()
        registry.register("h") { _ in ClosureEventFunction { chunk, _ in chunk.events.map { .forward($0) } } }
        let masked = Manifest(name: "f", handler: "h", triggers: [.stream("f")], middleware: ["deadline", "pii-mask"], file: "f.yaml")
        let function = try await registry.makeHandler(setup(masked, key: key)) as! any EventFunction
        let mask = try #require(FunctionInvoker(manifest: masked, function: function, logger: logger).storedEventMask)
        #expect(mask.mask(["cc": 4111111111111111]) == ["cc": "************1111"])
        let plain = Manifest(name: "g", handler: "h", triggers: [.stream("g")], middleware: ["deadline"], file: "g.yaml")
        let other = try await registry.makeHandler(setup(plain, key: key)) as! any EventFunction
        #expect(FunctionInvoker(manifest: plain, function: other, logger: logger).storedEventMask == nil)
    }

    /// A chunk's own fields (a dataset's subject and personal fields) are pseudonymised in what
    /// the function sees and in what a dead letter keeps; when they cannot be known, a dead letter
    /// keeps no string at all.
    @Test func aChunksOwnFieldsArePseudonymisedAndDeadLettersMaskThemToo() async throws {
        let masker = PIIMasker(operators: [:], key: Array(key.utf8))
        var mask = try PIIMaskMiddleware(manifest: manifest(), pseudonymKey: key)
        mask.chunkMasking = { _ in DatasetMasking(pseudonymised: [JSONPath("visitor"), JSONPath("contact")]) }
        let chunk = Chunk(id: "1-0", events: [Event(["visitor": "alice", "contact": "room 12", "page": "/p"])])
        let kept = await mask.masked(chunk)
        #expect(kept.events[0].value == ["visitor": .string(masker.pseudonymousUserID("alice")),
                                         "contact": .string(masker.pseudonymousUserID("room 12")), "page": "/p"])
        struct Unknown: Error {}
        mask.chunkMasking = { _ in throw Unknown() }
        #expect(await mask.masked(chunk).events[0].value == ["visitor": "<WITHHELD>", "contact": "<WITHHELD>", "page": "<WITHHELD>"])
    }

    /// A dataset's plan (issue 31, findings 1 and 13): its subject and `pii` fields become
    /// pseudonyms, its identifiers (key, time) and typed non-personal fields are stored as sent
    /// (an identifier holding an e-mail address becomes its pseudonym, whole), every other string
    /// is scanned; the plan applies under `config.pii.record` (the quarantine's `event`).
    @Test func aDatasetsPlanKeepsIdentifiersAndTypedValuesAndPseudonymisesItsPeople() async throws {
        let masker = PIIMasker(operators: [:], key: Array(key.utf8))
        let spec = DatasetSpec(name: "airports", fields: [
            .init(path: "code", type: .string, required: true),
            .init(path: "contact.email", type: .string, column: "contact_email", pii: true),
            .init(path: "owner", type: .string),
            .init(path: "latitude", type: .number),
            .init(path: "longitude", type: .string),
            .init(path: "phone", type: .integer, pii: false),
            .init(path: "seen_at", type: .timestamp),
            .init(path: "note", type: .string),
        ], key: ["code"], time: "seen_at", subject: "owner")
        let plan = spec.masking
        #expect(plan.pseudonymised.map(\.description) == ["owner", "contact.email", "contact_email"])
        #expect(plan.identifiers.map(\.description) == ["code", "seen_at"])
        #expect(plan.verbatim.map(\.description) == ["latitude", "phone"])
        let mask = try PIIMaskMiddleware(manifest: manifest(), pseudonymKey: key)
        let record: JSONValue = [
            "code": "555-123-4567", "contact": ["email": "ops@example.com"], "owner": "alice", "latitude": "31.95376472",
            "longitude": "555-123-4567", "phone": 4155552671, "seen_at": "2026-01-01 10:00:00", "note": "call 555-123-4567",
        ]
        let masked = mask.mask(record, plan: plan)
        #expect(masked == [
            "code": "555-123-4567", "contact": ["email": .string(masker.pseudonymousUserID("ops@example.com"))],
            "owner": .string(masker.pseudonymousUserID("alice")), "latitude": "31.95376472",
            "longitude": "***-***-4567", "phone": 4155552671, "seen_at": "2026-01-01 10:00:00", "note": "call ***-***-4567",
        ])
        // An identifier holding an e-mail address: pseudonymised whole, the same every time.
        let byMail = mask.mask(["code": "ops@example.com"], plan: plan)
        #expect(byMail == ["code": .string(masker.pseudonymousUserID("ops@example.com"))])
        // Without the plan the same record's id and number are starred: what the plan prevents.
        #expect(mask.mask(record)["code"] != "555-123-4567")
        #expect(mask.mask(record)["phone"] != 4155552671)
        // Under `record: event`, as the quarantine holds its items.
        var quarantine = try PIIMaskMiddleware(manifest: manifest(["pii": ["record": "event"]]), pseudonymKey: key)
        quarantine.chunkMasking = { _ in plan }
        let chunk = Chunk(id: "1-0", events: [Event(["reason": "wrong_type", "event": record])])
        let kept = await quarantine.masked(chunk)
        #expect(kept.events[0].value["event"] == masked)
    }

    @Test func operatorsAndFieldsComeFromTheManifest() async throws {
        let out = try await run([["user_id": "u-1", "uid": "u-2", "text": "x@example.com 4111111111111111"]],
                                config: ["pii": ["operators": ["email": "replace", "card": "off"], "user_fields": ["uid"]]])
        #expect(out[0]["user_id"] == "u-1")
        #expect(out[0]["uid"]?.stringValue.map(PIIMasker.isPseudonymousUserID) == true)
        #expect(out[0]["text"] == "<EMAIL> 4111111111111111")
    }

    @Test func badConfigurationIsAManifestError() {
        func error(_ config: JSONValue, key: String? = "a pseudonym key of at least 16 bytes") -> String? {
            do {
                _ = try PIIMaskMiddleware(manifest: manifest(config), pseudonymKey: key)
                return nil
            } catch {
                return "\(error.key): \(error.message)"
            }
        }
        #expect(error(["pii": ["operators": ["passport": "mask"]]])?.hasPrefix("config.pii.operators.passport: is not a kind") == true)
        #expect(error(["pii": ["operators": ["email": "shred"]]])?.hasPrefix("config.pii.operators.email: must be one of") == true)
        #expect(error(["pii": ["user_fields": "user.id"]]) == "config.pii.user_fields: must be a list of field paths")
        #expect(error(["pii": "yes"])?.hasPrefix("config.pii: must be a mapping") == true)
        #expect(error([:], key: nil) == "config.pii: pseudonyms need SLUICE_PSEUDONYM_KEY of at least 16 bytes")
        #expect(error([:], key: "short") == "config.pii: pseudonyms need SLUICE_PSEUDONYM_KEY of at least 16 bytes")
        // Nothing pseudonymised: no key needed.
        #expect(error(["pii": ["operators": ["email": "replace"], "user_fields": []]], key: nil) == nil)
    }
}
