import Foundation
@testable import SluiceFunctions
import Testing

/// Deterministic 64-bit values (splitmix64), standing in for PostgreSQL's hashes of user ids.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Distinct-user sketch")
struct DistinctSketchTests {
    func sketch(_ count: Int, seed: UInt64, limit: Int = DistinctSketch.storedExactLimit) -> DistinctSketch {
        var random = SplitMix64(state: seed)
        var sketch = DistinctSketch(exactLimit: limit)
        for _ in 0..<count { sketch.insert(random.next()) }
        return sketch
    }

    @Test func smallSetsAreCountedExactlyAndRepeatsOnce() {
        var sketch = DistinctSketch()
        #expect(sketch.estimate == 0 && sketch.isExact)
        for hash: UInt64 in [7, 7, 1 << 63, 0, 7, UInt64.max] { sketch.insert(hash) }
        #expect(sketch.estimate == 4 && sketch.isExact)
        let full = self.sketch(512, seed: 1)
        #expect(full.estimate == 512 && full.isExact)
        let over = self.sketch(513, seed: 1)
        #expect(!over.isExact)
        #expect(abs(over.estimate - 513) <= 8, "\(over.estimate)")
    }

    /// Within three standard errors (3 × 1.6 %) from 600 to two million.
    @Test(arguments: [600, 2_000, 10_000, 100_000, 2_000_000])
    func largeSetsAreEstimatedWithinThreeStandardErrors(count: Int) {
        for seed: UInt64 in [11, 12, 13] {
            let estimate = Double(sketch(count, seed: seed).estimate)
            #expect(abs(estimate - Double(count)) / Double(count) < 3 * 1.04 / 64, "\(count) estimated \(estimate)")
        }
    }

    @Test func mergingEqualsCountingTheUnion() {
        // Two overlapping sets: [0, 30000) and [20000, 50000) of one sequence.
        var random = SplitMix64(state: 5)
        let hashes = (0..<50_000).map { _ in random.next() }
        var left = DistinctSketch(), right = DistinctSketch(), union = DistinctSketch()
        left.insert(contentsOf: hashes[0..<30_000])
        right.insert(contentsOf: hashes[20_000...])
        union.insert(contentsOf: hashes)
        var merged = left
        merged.merge(right)
        #expect(merged == union)
        var other = right
        other.merge(left)
        #expect(other == union)
        // Exact sets merge exactly while the union is small; a large answer limit keeps more.
        var small = sketch(300, seed: 9), answer = DistinctSketch(exactLimit: DistinctSketch.answerExactLimit)
        small.merge(sketch(300, seed: 10))
        #expect(!small.isExact)  // 600 > 512
        answer.merge(sketch(300, seed: 9))
        answer.merge(sketch(300, seed: 10))
        answer.merge(sketch(300, seed: 9))
        #expect(answer.isExact && answer.estimate == 600)
        answer.merge(sketch(2_000, seed: 3))  // a dense sketch makes the answer an estimate
        #expect(!answer.isExact && abs(answer.estimate - 2_600) < 2_600 * 3 / 64)
    }

    @Test func storedFormRoundTripsAndRefusesDamage() throws {
        for sketch in [DistinctSketch(), sketch(3, seed: 4), sketch(512, seed: 4), sketch(5_000, seed: 4)] {
            #expect(try DistinctSketch(bytes: sketch.bytes) == sketch)
            #expect(try DistinctSketch(byteaHex: sketch.byteaHex) == sketch)
        }
        var two = DistinctSketch()
        two.insert(0x0102_0304_0506_0708)
        two.insert(1)
        #expect(two.byteaHex == #"\x0100000000000000010102030405060708"#)
        #expect(sketch(5_000, seed: 4).bytes.count == 4_097)
        for damaged in [#"\x"#, #"\x03"#, #"\x0101"#, #"\x01zz"#, "0100", #"\x010"#] {
            #expect(throws: DistinctSketch.DecodingError.self, "\(damaged)") { try DistinctSketch(byteaHex: damaged) }
        }
        var registers = sketch(5_000, seed: 4).bytes
        registers[10] = 54  // above the largest rank of 52 bits
        #expect(throws: DistinctSketch.DecodingError.self) { try DistinctSketch(bytes: registers) }
    }

    @Test func bigintArraysAreReadAsHashes() {
        #expect(DistinctSketch.hashes(fromBigintArray: "{}") == [])
        #expect(DistinctSketch.hashes(fromBigintArray: "{0,1,-1,9223372036854775807,-9223372036854775808}")
            == [0, 1, UInt64.max, UInt64(Int64.max), UInt64(1) << 63])
    }
}

@Suite("Summary plan")
struct SummaryPlanTests {
    let hour: Int64 = 3_600_000, minute: Int64 = 60_000
    let base: Int64 = 1_790_000_000 - 1_790_000_000 % 86_400  // a UTC midnight, seconds

    @Test func wholeHoursComeFromHourRollupsAndTheRestFromMinutes() {
        let from = base * 1000, to = from + 2 * hour + 3 * minute
        let plan = SummaryPlan(from: from, to: to, window: 86_400, stale: [])
        #expect(plan.windows.count == 1 && plan.windows[0].start == base)
        #expect(plan.windows[0].pieces == [.hour(base), .hour(base + 3600), .minute(base + 7200), .minute(base + 7260), .minute(base + 7320)])
    }

    @Test func partialMinutesAtTheEndsAreReadFromTheEvents() {
        let from = base * 1000 + 59 * minute + 30_500, to = base * 1000 + 62 * minute + 1
        let plan = SummaryPlan(from: from, to: to, window: 60, stale: [])
        #expect(plan.windows.map(\.start) == [base + 59 * 60, base + 60 * 60, base + 61 * 60, base + 62 * 60])
        #expect(plan.windows.map(\.pieces) == [
            [.events(start: from, end: base * 1000 + hour)], [.minute(base + 3600)], [.minute(base + 3660)],
            [.events(start: base * 1000 + 62 * minute, end: to)],
        ])
    }

    @Test func aStaleMinuteIsReadFromTheEventsAndBreaksItsHourIntoMinutes() {
        let from = base * 1000, to = from + 2 * hour
        let plan = SummaryPlan(from: from, to: to, window: 3600, stale: [base + 3600 + 600, base + 3600 + 660])
        #expect(plan.windows.count == 2)
        #expect(plan.windows[0].pieces == [.hour(base)])
        let second = plan.windows[1].pieces
        #expect(second.count == 59)  // ten minutes, one piece of two stale minutes, 48 minutes
        #expect(second[10] == .events(start: (base + 4200) * 1000, end: (base + 4320) * 1000))
        #expect(second.filter { if case .minute = $0 { return true } else { return false } }.count == 58)
    }

    @Test func windowsAreAlignedToTheEpochNotToFrom() {
        let from = base * 1000 + 7 * minute, to = from + 20 * minute
        let plan = SummaryPlan(from: from, to: to, window: 900, stale: [])
        // Minutes 7 to 14 in the window starting at 0, minutes 15 to 26 in the one starting at 15.
        #expect(plan.windows.map(\.start) == [base, base + 900])
        #expect(plan.windows[0].pieces == (7..<15).map { .minute(base + $0 * 60) })
        #expect(plan.windows[1].pieces == (15..<27).map { .minute(base + $0 * 60) })
    }
}
