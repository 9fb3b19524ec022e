import Foundation
import SluicePostgres

/// Counts distinct 64-bit hashes (of user ids): exactly while the set is small, as a
/// HyperLogLog sketch (2^12 registers, standard error 1.04/√4096 ≈ 1.6 %) beyond. Sketches of
/// minutes and hours are merged to answer any window without reading the events again.
///
/// The estimator is Otmar Ertl's improved raw estimator ("New cardinality estimation
/// algorithms for HyperLogLog sketches", 2017): unbiased over the whole range without the
/// empirical bias tables of HyperLogLog++.
///
/// Stored form (`bytes`): `0x01` then the hashes (8 bytes each, big-endian, ascending) while
/// exact, or `0x02` then the 4,096 registers.
struct DistinctSketch: Equatable, Sendable {
    static let precision = 12
    static let registerCount = 1 << precision
    /// Hashes a stored sketch keeps exactly: 512 × 8 bytes is the size of the registers.
    static let storedExactLimit = 512
    /// Hashes a sketch built for one answer keeps exactly (memory only, never stored).
    static let answerExactLimit = 1 << 16

    enum Storage: Equatable, Sendable {
        case exact(Set<UInt64>)
        case registers([UInt8])
    }

    private(set) var storage: Storage
    /// The most hashes kept exactly before switching to registers.
    let exactLimit: Int

    init(exactLimit: Int = DistinctSketch.storedExactLimit) {
        storage = .exact([])
        self.exactLimit = exactLimit
    }

    /// Whether `estimate` is the exact count.
    var isExact: Bool {
        if case .exact = storage { return true }
        return false
    }

    mutating func insert(_ hash: UInt64) {
        switch storage {
        case .exact(var hashes):
            storage = .exact([])  // keep the set uniquely referenced while it changes
            hashes.insert(hash)
            if hashes.count > exactLimit {
                storage = .registers(Self.registers(of: hashes))
            } else {
                storage = .exact(hashes)
            }
        case .registers(var registers):
            storage = .exact([])
            Self.add(hash, to: &registers)
            storage = .registers(registers)
        }
    }

    mutating func insert(contentsOf hashes: some Sequence<UInt64>) {
        for hash in hashes { insert(hash) }
    }

    mutating func merge(_ other: DistinctSketch) {
        switch other.storage {
        case .exact(let hashes):
            insert(contentsOf: hashes)
        case .registers(let theirs):
            var mine: [UInt8]
            switch storage {
            case .exact(let hashes): mine = Self.registers(of: hashes)
            case .registers(let registers): mine = registers
            }
            storage = .exact([])
            for index in 0..<Self.registerCount where theirs[index] > mine[index] { mine[index] = theirs[index] }
            storage = .registers(mine)
        }
    }

    /// The number of distinct hashes: exact, or the HyperLogLog estimate rounded.
    var estimate: Int64 {
        switch storage {
        case .exact(let hashes): return Int64(hashes.count)
        case .registers(let registers): return Int64(Self.estimate(registers).rounded())
        }
    }

    // MARK: Registers

    /// Register `hash >> 52` holds the largest run of leading zeros + 1 seen in the other 52 bits.
    static func add(_ hash: UInt64, to registers: inout [UInt8]) {
        let index = Int(hash >> UInt64(64 - precision))
        let rest = hash << UInt64(precision)
        let rank = rest == 0 ? UInt8(64 - precision + 1) : UInt8(rest.leadingZeroBitCount + 1)
        if rank > registers[index] { registers[index] = rank }
    }

    static func registers(of hashes: Set<UInt64>) -> [UInt8] {
        var registers = [UInt8](repeating: 0, count: registerCount)
        for hash in hashes { add(hash, to: &registers) }
        return registers
    }

    /// Ertl's improved raw estimator over the register histogram.
    static func estimate(_ registers: [UInt8]) -> Double {
        let q = 64 - precision
        let m = Double(registerCount)
        var histogram = [Double](repeating: 0, count: q + 2)
        for register in registers { histogram[Int(register)] += 1 }
        var z = m * tau(1 - histogram[q + 1] / m)
        for k in stride(from: q, through: 1, by: -1) {
            z += histogram[k]
            z *= 0.5
        }
        z += m * sigma(histogram[0] / m)
        return m * m / (2 * log(2.0)) / z
    }

    static func sigma(_ x: Double) -> Double {
        if x == 1 { return .infinity }
        var x = x, y = 1.0, z = x, previous = 0.0
        repeat {
            x *= x
            previous = z
            z += x * y
            y += y
        } while z != previous
        return z
    }

    static func tau(_ x: Double) -> Double {
        if x == 0 || x == 1 { return 0 }
        var x = x, y = 1.0, z = 1 - x, previous = 0.0
        repeat {
            x = x.squareRoot()
            previous = z
            y *= 0.5
            z -= (1 - x) * (1 - x) * y
        } while z != previous
        return z / 3
    }

    // MARK: Stored form

    enum DecodingError: Error { case malformed }

    var bytes: [UInt8] {
        switch storage {
        case .exact(let hashes):
            var bytes: [UInt8] = [1]
            bytes.reserveCapacity(1 + hashes.count * 8)
            for hash in hashes.sorted() {
                for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: hash >> UInt64(shift))) }
            }
            return bytes
        case .registers(let registers):
            return [2] + registers
        }
    }

    init(bytes: some Collection<UInt8>, exactLimit: Int = DistinctSketch.storedExactLimit) throws(DecodingError) {
        self.exactLimit = exactLimit
        guard let kind = bytes.first else { throw .malformed }
        let body = bytes.dropFirst()
        switch kind {
        case 1:
            guard body.count % 8 == 0 else { throw .malformed }
            var hashes = Set<UInt64>(minimumCapacity: body.count / 8)
            var hash: UInt64 = 0, filled = 0
            for byte in body {
                hash = hash << 8 | UInt64(byte)
                filled += 1
                if filled == 8 { hashes.insert(hash); hash = 0; filled = 0 }
            }
            storage = hashes.count > exactLimit ? .registers(Self.registers(of: hashes)) : .exact(hashes)
        case 2:
            guard body.count == Self.registerCount, body.allSatisfy({ $0 <= UInt8(64 - Self.precision + 1) }) else { throw .malformed }
            storage = .registers(Array(body))
        default:
            throw .malformed
        }
    }

    /// PostgreSQL's hex form of `bytea`: `\x0102…`.
    var byteaHex: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = [UInt8(ascii: "\\"), UInt8(ascii: "x")]
        let bytes = self.bytes
        text.reserveCapacity(2 + bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 15)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Reads PostgreSQL's hex form of `bytea`.
    init(byteaHex text: String, exactLimit: Int = DistinctSketch.storedExactLimit) throws(DecodingError) {
        var bytes: [UInt8] = []
        var utf8 = text.utf8.makeIterator()
        guard utf8.next() == UInt8(ascii: "\\"), utf8.next() == UInt8(ascii: "x") else { throw .malformed }
        bytes.reserveCapacity(text.utf8.count / 2)
        func nibble(_ c: UInt8) throws(DecodingError) -> UInt8 {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: throw .malformed
            }
        }
        while let high = utf8.next() {
            guard let low = utf8.next() else { throw .malformed }
            bytes.append(try nibble(high) << 4 | nibble(low))
        }
        try self.init(bytes: bytes, exactLimit: exactLimit)
    }

    /// Reads PostgreSQL's text form of `bigint[]` (`{1,-2,3}`) as hashes.
    static func hashes(fromBigintArray text: String) -> [UInt64] {
        var hashes: [UInt64] = []
        var value: Int64 = 0, negative = false, digits = 0
        for c in text.utf8 {
            switch c {
            case UInt8(ascii: "-"): negative = true
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                value = value &* 10 &+ Int64(c - UInt8(ascii: "0"))
                digits += 1
            default:  // ',' '{' '}'
                if digits > 0 { hashes.append(UInt64(bitPattern: negative ? 0 &- value : value)) }
                value = 0; negative = false; digits = 0
            }
        }
        return hashes
    }
}

/// A stored sketch (`bytea`) read from a column.
extension DistinctSketch: PostgresDecodable {
    init(postgresColumn text: String?) throws(PostgresColumnFailure) {
        guard let text else { throw .null }
        guard let sketch = try? DistinctSketch(byteaHex: text) else { throw .malformed }
        self = sketch
    }
}

/// A `bigint[]` of user hashes read from a column, by the sketch's own parser (these arrays
/// hold up to a minute's distinct users: the generic array decoder would build a `String`
/// per element).
struct UserHashes: PostgresDecodable {
    var values: [UInt64]

    init(postgresColumn text: String?) throws(PostgresColumnFailure) {
        guard let text else { throw .null }
        guard text.utf8.first == UInt8(ascii: "{") else { throw .malformed }
        values = DistinctSketch.hashes(fromBigintArray: text)
    }
}
