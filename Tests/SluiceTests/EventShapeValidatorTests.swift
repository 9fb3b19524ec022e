import Sluice
import SluiceFunctions
import Testing

@Suite("Event shape and freshness")
struct EventShapeValidatorTests {
    let now = Timestamp.milliseconds("2026-11-23T12:00:00Z")!
    let validator = EventShapeValidator()

    func event(timestamp: String = "2026-11-23T11:30:00.250Z") -> JSONValue {
        [
            "metadata": ["event_id": "e-1", "timestamp": .string(timestamp), "version": "1.0.0", "source": "web"],
            "user": ["id": "u-1", "session_id": "s-1", "attributes": ["plan": "pro"]],
            "context": ["device_type": "mobile", "location": ["country": "DE", "region": "BE"]],
            "payload": ["event_type": "purchase", "properties": ["value": 1.5], "custom_data": [:]],
        ]
    }

    @Test func timestamps() {
        #expect(Timestamp.milliseconds("1970-01-01T00:00:00Z") == 0)
        #expect(Timestamp.milliseconds("2026-11-23T12:00:00Z") == 1_795_435_200_000)
        #expect(Timestamp.milliseconds("2026-11-23T14:00:00+02:00") == 1_795_435_200_000)
        #expect(Timestamp.milliseconds("2026-11-23T11:30:00.250Z") == 1_795_433_400_250)
        #expect(Timestamp.milliseconds("2026-11-23T11:30:00.123456789Z") == 1_795_433_400_123)
        #expect(Timestamp.milliseconds("2024-02-29T00:00:00Z") == 1_709_164_800_000)
        #expect(Timestamp.milliseconds("2023-02-29T00:00:00Z") == nil)
        #expect(Timestamp.milliseconds("2026-11-23T12:00:00") == nil)
        #expect(Timestamp.milliseconds("2026-11-23") == nil)
        #expect(Timestamp.milliseconds("not-a-time") == nil)
        #expect(Timestamp.milliseconds("2026-13-01T00:00:00Z") == nil)
        #expect(Timestamp.milliseconds("2026-11-23T24:00:00Z") == nil)
        #expect(Timestamp.milliseconds("2026-11-23T12:00:00Zjunk") == nil)
    }

    @Test func validEvent() {
        #expect(validator.check(event(), nowMilliseconds: now) == .valid(eventID: "e-1", timestamp: 1_795_433_400_250))
    }

    @Test func freshness() {
        #expect(validator.check(event(timestamp: "2026-11-22T11:59:59Z"), nowMilliseconds: now) == .stale(eventID: "e-1"))
        #expect(validator.check(event(timestamp: "2026-11-22T12:00:00Z"), nowMilliseconds: now) == .valid(eventID: "e-1", timestamp: now - 86_400_000))
        #expect(validator.check(event(timestamp: "2026-11-23T12:05:00Z"), nowMilliseconds: now) == .valid(eventID: "e-1", timestamp: now + 300_000))
        #expect(validator.check(event(timestamp: "2026-11-23T12:05:01Z"), nowMilliseconds: now) == .malformed(reason: "future_timestamp", field: "metadata.timestamp"))
        let hourly = EventShapeValidator(maxAge: .seconds(3600))
        #expect(hourly.check(event(timestamp: "2026-11-23T10:59:00Z"), nowMilliseconds: now) == .stale(eventID: "e-1"))
    }

    /// The five ways gen_events.py breaks an event, and a few more.
    @Test func malformedEvents() {
        func verdict(_ change: (inout JSONValue) -> Void) -> EventShapeValidator.Verdict {
            var value = event()
            change(&value)
            return validator.check(value, nowMilliseconds: now)
        }
        #expect(verdict { $0.setValue(nil, atPath: "metadata.event_id") } == .malformed(reason: "missing_field", field: "metadata.event_id"))
        #expect(verdict { $0.setValue("not-a-time", atPath: "metadata.timestamp") } == .malformed(reason: "invalid_timestamp", field: "metadata.timestamp"))
        #expect(verdict { $0.setValue(42, atPath: "payload.event_type") } == .malformed(reason: "wrong_type", field: "payload.event_type"))
        #expect(verdict { $0.setValue(nil, atPath: "payload") } == .malformed(reason: "missing_field", field: "payload"))
        #expect(verdict { $0.setValue("just-a-string", atPath: "user") } == .malformed(reason: "wrong_type", field: "user"))
        #expect(verdict { $0.setValue("", atPath: "metadata.event_id") } == .malformed(reason: "missing_field", field: "metadata.event_id"))
        #expect(verdict { $0.setValue(7, atPath: "metadata.event_id") } == .malformed(reason: "wrong_type", field: "metadata.event_id"))
        #expect(verdict { $0.setValue("x", atPath: "context.location") } == .malformed(reason: "wrong_type", field: "context.location"))
        #expect(verdict { $0.setValue([1], atPath: "payload.properties") } == .malformed(reason: "wrong_type", field: "payload.properties"))
        #expect(verdict { $0.setValue(.null, atPath: "user.id") } == .malformed(reason: "missing_field", field: "user.id"))
        #expect(validator.check([1, 2], nowMilliseconds: now) == .malformed(reason: "wrong_type", field: ""))
    }
}
