#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

/// Writes each log record as one line of JSON on standard error:
/// `{"ts":"2026-11-30T00:00:00.123Z","level":"info","msg":"…","logger":"sluice","function":"validate","job":"…","chunk":"…","trace":"…"}`.
///
/// Metadata keys become fields of the line (sorted); a key that would replace `ts`, `level`,
/// `msg` or `logger` is written as `meta.KEY`. Each line is written with one `write(2)`, so
/// lines of concurrent tasks never interleave.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let descriptor: Int32

    /// A handler labelled `label` that writes records of `level` and above to `descriptor` (stderr).
    public init(label: String, level: Logger.Level = .info, descriptor: Int32 = 2) {
        self.label = label
        self.logLevel = level
        self.descriptor = descriptor
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        var line = Self.line(time: Self.now(), level: event.level, message: "\(event.message)", label: label, metadata: merged)
        line.append(UInt8(ascii: "\n"))
        line.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }

    static let reserved: Set<String> = ["ts", "level", "msg", "logger"]

    /// The JSON bytes of one record, without the newline.
    public static func line(time: (seconds: Int, milliseconds: Int), level: Logger.Level, message: String, label: String,
                            metadata: Logger.Metadata) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160 + message.utf8.count)
        out += Array("{\"ts\":\"".utf8)
        out += Array(timestamp(seconds: time.seconds, milliseconds: time.milliseconds).utf8)
        out += Array("\",\"level\":\"\(level.rawValue)\",\"msg\":".utf8)
        JSONValue.writeString(message, into: &out)
        out += Array(",\"logger\":".utf8)
        JSONValue.writeString(label, into: &out)
        for key in metadata.keys.sorted() {
            out.append(UInt8(ascii: ","))
            JSONValue.writeString(reserved.contains(key) ? "meta.\(key)" : key, into: &out)
            out.append(UInt8(ascii: ":"))
            writeValue(metadata[key]!, into: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    static func writeValue(_ value: Logger.Metadata.Value, into out: inout [UInt8]) {
        switch value {
        case .string(let text): JSONValue.writeString(text, into: &out)
        case .stringConvertible(let convertible): JSONValue.writeString(convertible.description, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                writeValue(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .dictionary(let fields):
            out.append(UInt8(ascii: "{"))
            for (index, key) in fields.keys.sorted().enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                writeValue(fields[key]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func now() -> (seconds: Int, milliseconds: Int) {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return (Int(spec.tv_sec), Int(spec.tv_nsec) / 1_000_000)
    }

    /// RFC 3339 in UTC with milliseconds.
    static func timestamp(seconds: Int, milliseconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(milliseconds), 3))Z"
    }
}
