import Sluice

/// The upload formats ingest reads, and how a request names one.
public enum UploadFormat: String, Sendable, CaseIterable {
    case ndjson, json, csv, xml, text

    /// From `?format=` (wins), else the `Content-Type`, else the file name's extension
    /// (`?filename=` or `Content-Disposition`); nil when none names a known format.
    public static func detect(query: String?, contentType: String?, filename: String?) -> UploadFormat? {
        if let query {
            switch query.lowercased() {
            case "ndjson", "jsonl", "jsonlines": return .ndjson
            case "json": return .json
            case "csv": return .csv
            case "xml": return .xml
            case "text", "txt", "plain": return .text
            default: return nil
            }
        }
        if let contentType {
            switch contentType.mediaType {
            case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines":
                return .ndjson
            case "application/json": return .json
            case "text/csv", "application/csv": return .csv
            case "application/xml", "text/xml": return .xml
            case "text/plain": return .text
            default: break
            }
        }
        if let filename, let dot = filename.lastIndex(of: ".") {
            switch filename[filename.index(after: dot)...].lowercased() {
            case "ndjson", "jsonl": return .ndjson
            case "json": return .json
            case "csv": return .csv
            case "xml": return .xml
            case "txt", "log", "text": return .text
            default: break
            }
        }
        return nil
    }

    /// The file name in a `Content-Disposition` header (`filename="x.csv"`).
    public static func filename(fromContentDisposition header: String) -> String? {
        for part in header.split(separator: ";") {
            let item = String(part).trimmingSpaces()
            guard item.lowercased().hasPrefix("filename=") else { continue }
            var name = Substring(item.dropFirst("filename=".count))
            if name.hasPrefix("\""), name.hasSuffix("\""), name.count >= 2 { name = name.dropFirst().dropLast() }
            return String(name)
        }
        return nil
    }
}
