import Sluice
import SluiceHTTP

extension PrivacyFunction {
    /// The public routes of consents, erasure and the audit log, as the OpenAPI document describes them.
    public static let operations: [APIOperation] = {
        let subject = APIOperation.Parameter(
            "subject", in: .path, description: "The user id as events carry it (user.id), or its pseudonym (u_ and 32 letters a–p) as the warehouse holds it.",
            schema: ["type": "string", "minLength": 1, "maxLength": 512])
        let unavailable = APIOperation.Response.problem("503", "The consent store is not reachable; try again.")
        return [
            APIOperation(
                "PUT", "/api/v1/consents/{subject}", id: "putConsent",
                summary: "Record a subject's consent to a purpose, or its withdrawal (* for every purpose); every process follows within a second", tag: "privacy",
                parameters: [subject],
                requestBody: [("application/json", APISchemas.ref("ConsentChange"))],
                responses: [
                    .json("200", "The consent as recorded.", APISchemas.ref("Consent")),
                    .problem("400", "Not a JSON object with a valid purpose and a boolean granted (`field` names it)."),
                    .problem("413", "The body is larger than 16 KB."),
                    .notJSON,
                    unavailable,
                ]),
            APIOperation(
                "GET", "/api/v1/consents/{subject}", id: "getConsents", summary: "The consents recorded for a subject", tag: "privacy",
                parameters: [subject],
                responses: [.json("200", "The subject's recorded consents (none: an empty list).", APISchemas.ref("Consents")), unavailable]),
            APIOperation(
                "DELETE", "/api/v1/subjects/{subject}", id: "eraseSubject",
                summary: "Erase a subject: their warehouse, quarantine and asynchronous-call rows are deleted and a withdrawal for every purpose is recorded, so later events are dropped as no_consent",
                tag: "privacy", parameters: [subject],
                responses: [.json("200", "What was removed.", APISchemas.ref("ErasureReport")), unavailable]),
            APIOperation(
                "GET", "/api/v1/audit", id: "getAudit", summary: "The audit log, newest first", tag: "privacy",
                parameters: [
                    .init("actor", in: .query, description: "Only entries of this caller (the token's subject).", schema: APISchemas.string),
                    .init("action", in: .query, description: "Only entries of this action (an operation id of this document, or redriveDeadLetters).", schema: APISchemas.string),
                    .init("subject", in: .query, description: "Only entries about this data subject (a user id or its pseudonym).", schema: APISchemas.string),
                    .init("limit", in: .query, description: "The most entries to answer.", schema: ["type": "integer", "minimum": 1, "maximum": 1000, "default": 100]),
                    .init("before", in: .query, description: "Only entries older than this entry id (the previous page's next_before).", schema: ["type": "integer", "minimum": 1]),
                ],
                responses: [
                    .json("200", "One page of entries.", APISchemas.ref("AuditPage")),
                    .problem("400", "A parameter is not valid (`parameter` names it)."),
                    unavailable,
                ]),
        ]
    }()
}
