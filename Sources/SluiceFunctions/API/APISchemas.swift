import Sluice

/// The named schemas of the public API (`#/components/schemas/…`).
public enum APISchemas {
    static func ref(_ name: String) -> JSONValue { ["$ref": .string("#/components/schemas/\(name)")] }
    static let string: JSONValue = ["type": "string"]
    static let integer: JSONValue = ["type": "integer"]
    static let timestamp: JSONValue = ["type": "string", "format": "date-time"]
    static let jobID: JSONValue = ["type": "string", "format": "uuid"]

    static let nullableString: JSONValue = ["type": "string", "nullable": true]
    static let nullableJSON: JSONValue = ["nullable": true, "description": "Any JSON object or array."]
    static let counts: JSONValue = ["type": "object", "additionalProperties": integer]

    /// A warehouse row's columns, from the lists the warehouse function reads and writes.
    static func recordProperties(timestamps: JSONValue) -> JSONObject {
        var properties: JSONObject = [
            "event_id": string, "job_id": ["type": "string", "format": "uuid", "nullable": true],
            "event_time": ["type": "string", "format": "date-time", "nullable": true],
        ]
        for column in WarehouseFunction.textColumns { properties[column] = nullableString }
        for column in WarehouseFunction.jsonColumns { properties[column] = nullableJSON }
        properties["received_at"] = timestamps
        properties["loaded_at"] = timestamps
        return properties
    }

    public static let components: JSONObject = [
        "Record": [
            "type": "object",
            "description": "One row of the warehouse table `events`.",
            "required": ["event_id", "received_at", "loaded_at"],
            "properties": .object(recordProperties(timestamps: timestamp)),
        ],
        "RecordChange": [
            "type": "object",
            "description": "The record's new columns. A column left out becomes null; event_id, job_id, received_at and loaded_at may be repeated unchanged.",
            "additionalProperties": false,
            "properties": .object(recordProperties(timestamps: string)),
        ],
        "Summary": [
            "type": "object",
            "required": ["from", "to", "window", "total", "windows", "unique_users_estimated"],
            "properties": [
                "from": timestamp, "to": timestamp, "window": string, "event_type": string,
                "unique_users_estimated": [
                    "type": "boolean",
                    "description": "Whether a unique_users figure is a HyperLogLog estimate (standard error 1.6 %) rather than exact.",
                ],
                "total": [
                    "type": "object", "required": ["events", "unique_users", "by_event_type"],
                    "properties": ["events": integer, "unique_users": integer, "by_event_type": counts],
                ],
                "windows": [
                    "type": "array",
                    "items": [
                        "type": "object", "required": ["start", "events", "unique_users", "by_event_type"],
                        "properties": ["start": timestamp, "events": integer, "unique_users": integer, "by_event_type": counts],
                    ],
                ],
            ],
        ],
        "Problem": [
            "type": "object",
            "description": "An RFC 9457 problem. `code` is stable; other members (`offset`, `line`, `job_id`, `limit`, `parameter`, `stage`, `job_status`) appear where they help.",
            "required": ["type", "title", "status", "code", "detail"],
            "properties": [
                "type": string, "title": string, "status": integer, "code": string, "detail": string,
                "offset": integer, "line": integer, "job_id": string, "limit": integer, "parameter": string,
                "stage": string, "job_status": string, "error": string, "retryable": ["type": "boolean"],
                "event_id": ["type": "string", "nullable": true], "reason": string, "field": string,
            ],
        ],
        "JobCounts": [
            "type": "object",
            "description": "What happened to the job's events; `received` is final once the body has ended. `dropped` counts events a function dropped for a reason of its own (e.g. `filtered`), or because their job had failed.",
            "required": .array(JobCounters.reported.map(JSONValue.string)),
            "properties": [
                "received": integer, "loaded": integer, "quarantined": integer, "stale": integer, "duplicate": integer,
                "no_consent": integer, "geo_restricted": integer, "dropped": integer, "failed": integer, "cancelled": integer, "in_flight": integer,
                "added": ["type": "integer", "description": "Events functions passed on beyond one in place of one (a row forwarded as its line items): the job waits for these too."],
            ],
        ],
        "Job": [
            "type": "object",
            "required": ["id", "status", "counts", "created_at", "updated_at"],
            "properties": [
                "id": jobID,
                "status": ["type": "string", "enum": .array(JobStatus.names.map(JSONValue.string))],
                "dataset": string,
                "format": ["type": "string", "nullable": true],
                "counts": ref("JobCounts"),
                "drops": ["type": "object", "additionalProperties": integer, "description": "The events counted in `dropped`, by reason (a user function's own reasons)."],
                "error": string,
                "schema": ref("CSVSchema"),
                "content_type": string,
                "bytes": integer,
                "created_at": timestamp, "updated_at": timestamp,
                "finished_at": ["type": "string", "format": "date-time", "nullable": true],
            ],
        ],
        "CSVSchema": [
            "type": "array",
            "description": "CSV uploads: each column in order with the type inferred from its cells (integer, number, boolean, timestamp, string, empty).",
            "items": [
                "type": "object", "required": ["name", "type"],
                "properties": ["name": string, "type": string],
            ],
        ],
        "RecordAccepted": [
            "type": "object",
            "required": ["job_id", "event_id"],
            "properties": [
                "job_id": jobID, "event_id": ["type": "string", "nullable": true],
                "outcome": ["type": "string", "enum": ["loaded"]], "status": ["type": "string", "enum": [.string(JobStatus.processing.rawValue)]],
            ],
        ],
        "CallAccepted": [
            "type": "object", "required": ["call_id", "function", "status"],
            "properties": ["call_id": jobID, "function": string, "status": ["type": "string", "enum": ["queued"]]],
        ],
        "Call": [
            "type": "object", "required": ["id", "function", "status", "created_at"],
            "properties": [
                "id": jobID, "function": string,
                "status": ["type": "string", "enum": ["queued", "running", "succeeded", "failed"]],
                "outcomes": ["type": "array", "items": ["type": "object", "additionalProperties": true]],
                "error": ["type": "object", "properties": ["code": string, "kind": string, "message": string]],
                "callback": [
                    "type": "object", "required": ["status", "attempts"],
                    "properties": ["status": ["type": "string", "enum": ["pending", "delivered", "failed"]], "attempts": integer, "last_error": string],
                ],
                "created_at": timestamp,
                "started_at": ["type": "string", "format": "date-time", "nullable": true],
                "finished_at": ["type": "string", "format": "date-time", "nullable": true],
            ],
        ],
        "JobList": [
            "type": "object",
            "required": ["jobs", "next_before"],
            "properties": [
                "jobs": ["type": "array", "items": ref("Job")],
                "next_before": ["type": "string", "format": "uuid", "nullable": true, "description": "Pass as `before` for the next page; null on the last."],
            ],
        ],
        "UploadAccepted": [
            "type": "object",
            "required": ["job_id", "status", "format", "received"],
            "properties": [
                "job_id": jobID, "status": ["type": "string", "enum": [.string(JobStatus.received.rawValue)]],
                "format": ["type": "string", "enum": ["ndjson", "json", "csv", "xml", "text"]],
                "received": integer,
                "schema": ref("CSVSchema"),
                "dataset": string,
                "detected": ref("DatasetSpec"),
            ],
        ],
        "DatasetSpec": [
            "type": "object",
            "description": "A dataset: its fields (dotted paths, types, required, the column each loads into, pii), key, time and subject fields, table, indexes, chain and per-function steps. See docs/datasets.md.",
            "required": ["name", "fields", "key"],
            "properties": [
                "name": ["type": "string", "pattern": "^[a-z_][a-z0-9_]{0,62}$"],
                "description": string,
                "fields": ["type": "array", "maxItems": 1000, "items": [
                    "type": "object", "required": ["name", "type"],
                    "properties": [
                        "name": string, "type": ["type": "string", "enum": .array(DatasetSpec.FieldType.allCases.map { .string($0.rawValue) })],
                        "required": ["type": "boolean"], "column": nullableString, "pii": ["type": "boolean"],
                    ],
                ]],
                "columns": ["type": "array", "items": ["type": "object"]],
                "key": ["type": "array", "items": string],
                "time": string, "subject": string, "table": string,
                "indexes": ["type": "array", "items": ["type": "array", "items": string]],
                "chain": ["type": "array", "items": string],
                "steps": ["type": "object"],
                "detected": ["type": "boolean"],
            ],
        ],
        "Dataset": [
            "type": "object",
            "required": ["name", "version", "origin", "table", "spec", "created_at", "updated_at", "changes"],
            "properties": [
                "name": string, "version": integer, "origin": ["type": "string", "enum": ["file", "api", "detected"]], "table": string,
                "spec": ref("DatasetSpec"), "created_at": timestamp, "updated_at": timestamp,
                "changes": ["type": "array", "description": "What the request changed in the table: add_column, change_type or add_index.",
                            "items": ["type": "object"]],
            ],
        ],
        "DatasetSummary": [
            "type": "object",
            "required": ["name", "table", "version", "origin", "rows", "bytes", "created_at", "updated_at", "last_loaded_at"],
            "properties": [
                "name": string, "table": string, "version": integer, "origin": string, "rows": integer,
                "bytes": ["type": "integer", "description": "The table's size on disk, indexes included."],
                "fields": integer, "created_at": timestamp, "updated_at": timestamp,
                "last_loaded_at": ["type": "string", "format": "date-time", "nullable": true],
            ],
        ],
        "RecordPage": [
            "type": "object", "required": ["dataset", "records", "next_cursor"],
            "properties": [
                "dataset": string, "records": ["type": "array", "items": ["type": "object"]],
                "next_cursor": ["type": "string", "nullable": true, "description": "Pass as after= for the next page; null on the last."],
            ],
        ],
        "DatasetList": [
            "type": "object", "required": ["datasets"],
            "properties": ["datasets": ["type": "array", "items": ref("DatasetSummary")]],
        ],
        "DatasetDetail": [
            "allOf": [
                ref("DatasetSummary"),
                [
                    "type": "object", "required": ["spec", "profile"],
                    "properties": [
                        "spec": ref("DatasetSpec"),
                        "profile": ["type": "array", "items": ref("ColumnProfile")],
                    ],
                ],
            ],
        ],
        "ColumnProfile": [
            "type": "object",
            "description": "One column: nulls, distinct values, min and max (as text; null for JSON, boolean and personal-data columns) and the most frequent values (none for personal data).",
            "required": ["column", "type", "nulls", "distinct", "min", "max", "top"],
            "properties": [
                "column": string, "type": string, "nulls": integer, "distinct": integer, "min": nullableString, "max": nullableString,
                "top": ["type": "array", "items": [
                    "type": "object", "required": ["value", "count"], "properties": ["value": string, "count": integer],
                ]],
            ],
        ],
        "ConsentChange": [
            "type": "object", "required": ["purpose", "granted"], "additionalProperties": false,
            "properties": [
                "purpose": ["type": "string", "pattern": "^(\\*|[a-z][a-z0-9_.-]{0,63})$", "description": "The processing purpose; * for every purpose."],
                "granted": ["type": "boolean"],
            ],
        ],
        "Consent": [
            "type": "object", "required": ["subject", "purpose", "granted", "updated_at"],
            "properties": ["subject": ref("Pseudonym"), "purpose": string, "granted": ["type": "boolean"], "updated_at": timestamp],
        ],
        "Consents": [
            "type": "object", "required": ["subject", "consents"],
            "properties": [
                "subject": ref("Pseudonym"),
                "consents": [
                    "type": "array",
                    "items": [
                        "type": "object", "required": ["purpose", "granted", "source", "updated_at"],
                        "properties": ["purpose": string, "granted": ["type": "boolean"], "source": ["type": "string", "enum": ["api", "erasure"]], "updated_at": timestamp],
                    ],
                ],
            ],
        ],
        "Pseudonym": ["type": "string", "pattern": "^u_[a-p]{32}$", "description": "The keyed pseudonym of a user id, as the warehouse stores it."],
        "ErasureReport": [
            "type": "object", "required": ["subject", "removed", "consent", "audit_id", "duration_ms"],
            "properties": [
                "subject": ref("Pseudonym"),
                "removed": [
                    "type": "object", "required": ["events", "quarantine", "async_calls", "datasets"],
                    "properties": [
                        "events": integer, "quarantine": integer, "async_calls": integer,
                        "datasets": ["type": "object", "description": "Rows removed from each dataset that has a subject field, by name.",
                                     "additionalProperties": integer],
                    ],
                ],
                "consent": ref("Consent"),
                "audit_id": integer,
                "duration_ms": integer,
            ],
        ],
        "AuditPage": [
            "type": "object", "required": ["entries"],
            "properties": [
                "entries": [
                    "type": "array",
                    "items": [
                        "type": "object", "required": ["id", "at", "actor", "action", "resource", "subject", "request_id", "status", "detail"],
                        "properties": [
                            "id": integer, "at": timestamp, "actor": string, "action": string, "resource": string,
                            "subject": ["type": "string", "nullable": true], "request_id": ["type": "string", "nullable": true],
                            "status": ["type": "integer", "nullable": true], "detail": ["nullable": true, "description": "What the action did (counts, the consent given)."],
                        ],
                    ],
                ],
                "next_before": ["type": "integer", "description": "Present when older entries exist: pass it as before."],
            ],
        ],
        "Event": [
            "type": "object",
            "description": "One event. The built-in shape: metadata{event_id, timestamp, version, source}, user{id, session_id, attributes}, context{device_type, os_version, app_version, location{country, region}}, payload{event_type, properties, custom_data}.",
            "additionalProperties": true,
        ],
        "TransformResult": [
            "type": "object",
            "required": ["stages", "counts", "results"],
            "properties": [
                "stages": ["type": "array", "items": string],
                "counts": [
                    "type": "object", "required": ["forward", "drop", "quarantine"],
                    "properties": ["forward": integer, "drop": integer, "quarantine": integer],
                ],
                "results": [
                    "type": "array",
                    "items": [
                        "type": "object", "required": ["index", "outcome"],
                        "properties": [
                            "index": integer, "outcome": ["type": "string", "enum": ["forward", "drop", "quarantine"]],
                            "row": ["type": "object", "additionalProperties": true], "reason": string, "stage": string,
                        ],
                    ],
                ],
            ],
        ],
    ]
}
