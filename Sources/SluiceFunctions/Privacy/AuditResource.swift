import Foundation
import Sluice
import SluicePrivacy

/// What an audit row says a request touched: the route's template
/// (`/api/v1/datasets/{name}/records/{key}`), never the path, and the path's parameters masked
/// as the pipeline masks personal data. A path is text a caller typed (an e-mail address as a
/// record's key, a user id as a subject) and the audit log is append-only, so a raw path could
/// never be erased.
///
/// A parameter named `subject` becomes the subject's pseudonym (the form erasure looks for,
/// and the row's `subject`); every other parameter is percent-decoded and passed through the
/// ``PIIMasker`` with every kind of personal data pseudonymised (`<EMAIL:…>`, the same keyed
/// pseudonym the pipeline writes), so an id stays readable and an address never is.
public struct AuditResource: Sendable, Equatable {
    /// The route's template.
    public var template: String
    /// The parameters by name, masked.
    public var parameters: [String: String]
    /// The pseudonym of a `subject` parameter.
    public var subject: String?

    /// The masker of audit parameters for the pseudonym key `key` (`SLUICE_PSEUDONYM_KEY`):
    /// every kind pseudonymised; without a key of 16 bytes, every kind replaced by its
    /// placeholder (`<EMAIL>`), which needs none.
    public static func masker(key: String?) -> PIIMasker {
        let bytes = Array((key ?? "").utf8)
        let keyed = bytes.count >= 16
        return PIIMasker(operators: Dictionary(uniqueKeysWithValues: PIIEntity.allCases.map { ($0, keyed ? .pseudonym : .replace) }),
                         key: bytes)
    }

    /// The resource of a request whose path has `segments` (after the leading `/`), matched by
    /// the route whose template has `pattern` segments (`{name}` for a parameter).
    static func of(pattern: [String], segments: [Substring], masker: PIIMasker) -> AuditResource {
        var parameters: [String: String] = [:]
        var subject: String?
        for (name, value) in zip(pattern, segments) where name.hasPrefix("{") && name.hasSuffix("}") {
            let key = String(name.dropFirst().dropLast())
            let decoded = String(value).removingPercentEncoding ?? String(value)
            if key == "subject" {
                let pseudonym = PIIMasker.isPseudonymousUserID(decoded) ? decoded : masker.pseudonymousUserID(decoded)
                subject = pseudonym
                parameters[key] = pseudonym
            } else {
                parameters[key] = masker.mask(decoded)
            }
        }
        return AuditResource(template: "/" + pattern.joined(separator: "/"), parameters: parameters, subject: subject)
    }

    /// The row's `detail`: `{"parameters": {...}}`, or `nil` for a route without any.
    var detail: JSONValue? {
        guard !parameters.isEmpty else { return nil }
        return ["parameters": .object(JSONObject(uncheckedMembers: parameters.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.string($0.value)) }))]
    }
}
