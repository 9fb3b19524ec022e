import Sluice
import SluiceHTTP

extension IngestFunction {
    /// The public routes ingest answers, as the OpenAPI document describes them.
    public static let operations: [APIOperation] = {
        let jobID = APIOperation.Parameter("id", in: .path, description: "The job id.", schema: APISchemas.jobID)
        let unavailable = APIOperation.Response.problem("503", "The job store or the event stream is not reachable; try again.")
        let datasetName = APIOperation.Parameter("name", in: .path, description: "The dataset's name.",
                                                 schema: ["type": "string", "pattern": "^[a-z_][a-z0-9_]{0,62}$"])
        let uploadParameters: [APIOperation.Parameter] = [
            .init("format", in: .query, description: "The format, when Content-Type does not say it.",
                  schema: ["type": "string", "enum": ["ndjson", "json", "csv", "xml", "text"]]),
            .init("filename", in: .query, description: "The file name; its extension names the format when nothing else does.",
                  schema: APISchemas.string),
            .init("callback_url", in: .query,
                  description: "Where notify POSTs the job's end (signed like the webhook; public http(s) addresses only). X-Callback-Url says the same.",
                  schema: ["type": "string", "format": "uri"]),
            .init("X-Callback-Url", in: .header, description: "As callback_url.", schema: ["type": "string", "format": "uri"]),
        ]
        let uploadBody: [(String, JSONValue)] = [
            ("application/x-ndjson", ["type": "string", "description": "One JSON object per line."]),
            ("application/json", ["type": "array", "items": ["type": "object"]]),
            ("text/csv", ["type": "string", "description": "A header row, then one record per row."]),
            ("application/xml", ["type": "string", "description": "<events><event>…</event></events>"]),
            ("text/plain", ["type": "string", "description": "One record per line, as {\"text\": line}."]),
        ]
        let detection: [APIOperation.Parameter] = [
            .init("key", in: .query, description: "A new dataset's key field(s), comma-separated; default the first field called id or ending in _id that every record holds.",
                  schema: APISchemas.string),
            .init("time", in: .query, description: "A new dataset's event-time field (its freshness is checked by it).", schema: APISchemas.string),
        ]
        return [
            APIOperation(
                "POST", "/api/v1/datasets/{name}/ingest", id: "ingestDataset",
                summary: "Upload records to a dataset; a caller who may create datasets makes a new one from the upload's first records", tag: "datasets",
                parameters: [datasetName] + uploadParameters + detection,
                requestBody: uploadBody,
                responses: [
                    .json("202", "The body has ended and every record is on its way; follow the job. A new dataset's detected spec is in `detected`.",
                          APISchemas.ref("UploadAccepted")),
                    .problem("400", "The body cannot be parsed (code and offset say where); the job is failed and nothing of it is loaded."),
                    .problem("404", "No dataset has this name (dataset_not_found), and the caller may not create one."),
                    .problem("409", "The upload's records would change the new dataset's schema in a way that breaks rows already loaded (schema_incompatible)."),
                    .problem("413", "The body is larger than the manifest's max_body_bytes."),
                    .problem("415", "The format is not named by Content-Type, ?format= or the file name."),
                    .problem("422", "A new dataset cannot be made from the records: a name or column that cannot be used (dataset_bad_name, `column` names it), no key (dataset_invalid), too many fields."),
                    unavailable,
                ]),
            APIOperation(
                "POST", "/api/v1/datasets", id: "createDataset",
                summary: "Declare a dataset (a JSON spec), or detect one from a sample (CSV, NDJSON or a JSON array, with ?name=); its table is created", tag: "datasets",
                parameters: [
                    .init("name", in: .query, description: "The new dataset's name, for a sample.", schema: APISchemas.string),
                    .init("format", in: .query, description: "The sample's format, when Content-Type does not say it.",
                          schema: ["type": "string", "enum": ["ndjson", "json", "csv"]]),
                ] + detection,
                requestBody: [
                    ("application/json", APISchemas.ref("DatasetSpec")),
                    ("text/csv", ["type": "string", "description": "A sample: a header row, then records."]),
                    ("application/x-ndjson", ["type": "string", "description": "A sample: one JSON object per line."]),
                ],
                responses: [
                    .json("201", "Created.", APISchemas.ref("Dataset")),
                    .problem("400", "The body cannot be parsed, or a sample has no ?name=."),
                    .problem("403", "Only admin and ingest's config.create_datasets roles create datasets."),
                    .problem("409", "A dataset has this name already (dataset_exists)."),
                    .problem("413", "The body is larger than 16 MiB."),
                    .problem("415", "Not a JSON spec nor a CSV or NDJSON sample."),
                    .problem("422", "The spec cannot be used (dataset_invalid, dataset_bad_name, dataset_too_many_fields; `key` and `column` say where)."),
                    unavailable,
                ]),
            APIOperation(
                "PUT", "/api/v1/datasets/{name}", id: "updateDataset",
                summary: "Change a dataset's spec: a new optional column, a wider type or a new index at any time; a change that would break loaded rows only as a migration",
                tag: "datasets",
                parameters: [
                    datasetName,
                    .init("migration", in: .query, description: "Declare the change a migration: a new required column, a narrower type (every row cast), a column no longer loaded.",
                          schema: ["type": "boolean", "default": false]),
                ],
                requestBody: [("application/json", APISchemas.ref("DatasetSpec"))],
                responses: [
                    .json("200", "The dataset as it is now, and what changed.", APISchemas.ref("Dataset")),
                    .problem("400", "The body is not JSON."),
                    .problem("403", "Only admin and ingest's config.create_datasets roles change datasets."),
                    .problem("404", "No dataset has this name."),
                    .problem("409", "The change would break rows already loaded (schema_incompatible, `column` names it); declare a migration."),
                    .problem("413", "The body is larger than 16 MiB."),
                    .problem("422", "The spec cannot be used (`key` and `column` say where)."),
                    unavailable,
                ]),
            APIOperation(
                "POST", "/api/v1/ingest", id: "ingest", summary: "Upload events: NDJSON, a JSON array, CSV with a header row, XML or plain text",
                tag: "ingest",
                parameters: uploadParameters,
                requestBody: [
                    ("application/x-ndjson", ["type": "string", "description": "One JSON object per line."]),
                    ("application/json", ["type": "array", "items": APISchemas.ref("Event")]),
                    ("text/csv", ["type": "string", "description": "A header row, then one event per row."]),
                    ("application/xml", ["type": "string", "description": "<events><event>…</event></events>"]),
                    ("text/plain", ["type": "string", "description": "One event per line, as {\"text\": line}."]),
                ],
                responses: [
                    .json("202", "The body has ended and every event is on its way; follow the job.", APISchemas.ref("UploadAccepted")),
                    .problem("400", "The body cannot be parsed (code and offset say where); the job is failed and nothing of it is loaded. Or the callback URL is refused (invalid_callback_url, with reason)."),
                    .problem("413", "The body is larger than the manifest's max_body_bytes."),
                    .problem("415", "The format is not named by Content-Type, ?format= or the file name."),
                    unavailable,
                ]),
            APIOperation(
                "GET", "/api/v1/jobs", id: "listJobs", summary: "List jobs, newest first", tag: "jobs",
                parameters: [
                    .init("limit", in: .query, description: "Jobs per page (1–500, default 50).",
                          schema: ["type": "integer", "minimum": 1, "maximum": 500, "default": 50]),
                    .init("status", in: .query, description: "Only jobs in this status.",
                          schema: ["type": "string", "enum": .array(JobStatus.names.map(JSONValue.string))]),
                    .init("before", in: .query, description: "The next_before of the previous page.", schema: APISchemas.jobID),
                ],
                responses: [
                    .json("200", "A page of jobs.", APISchemas.ref("JobList")),
                    .problem("400", "A parameter is not valid (`parameter` names it)."),
                    unavailable,
                ]),
            APIOperation(
                "GET", "/api/v1/jobs/{id}", id: "getJob", summary: "A job's status and the account of its events", tag: "jobs",
                parameters: [jobID],
                responses: [
                    .json("200", "The job.", APISchemas.ref("Job")),
                    .problem("404", "No job has this id."),
                    unavailable,
                ]),
            APIOperation(
                "DELETE", "/api/v1/jobs/{id}", id: "cancelJob", summary: "Cancel a job: its remaining chunks are dropped as cancelled", tag: "jobs",
                parameters: [jobID],
                responses: [
                    .json("200", "The job, now cancelled.", APISchemas.ref("Job")),
                    .problem("404", "No job has this id."),
                    .problem("409", "The job has already ended (`job_status` says how)."),
                    unavailable,
                ]),
            APIOperation(
                "POST", "/api/v1/data", id: "postRecord",
                summary: "One event through the whole pipeline, answered with its fate once its job settles", tag: "data",
                requestBody: [("application/json", APISchemas.ref("Event"))],
                responses: [
                    .init("201", "Loaded; Location names the record.", content: [("application/json", APISchemas.ref("RecordAccepted"))],
                          headers: ["Location": "/api/v1/data/{event_id}"]),
                    .json("202", "Not settled within the manifest's record_wait: follow the job.", APISchemas.ref("RecordAccepted")),
                    .problem("400", "Not a JSON object."),
                    .problem("409", "An event with this event_id was loaded before (duplicate_event)."),
                    .problem("413", "Larger than the manifest's max_record_bytes."),
                    .notJSON,
                    .problem("422", "Not loaded: quarantined (with `reason`), stale, no_consent or geo_restricted."),
                    unavailable,
                ]),
            APIOperation(
                "POST", "/api/v1/process/transform", id: "processTransform",
                summary: "Run validate → enrich → transform on the posted events and answer each one's fate; stores nothing", tag: "ingest",
                requestBody: [
                    ("application/json", ["type": "array", "items": APISchemas.ref("Event"), "maxItems": 10000]),
                    ("application/x-ndjson", ["type": "string"]),
                ],
                responses: [
                    .json("200", "Each event's outcome, and the warehouse row of those that pass.", APISchemas.ref("TransformResult")),
                    .problem("400", "The body cannot be parsed."),
                    .problem("413", "More than 8 MB or 10,000 events."),
                    .problem("422", "A stage failed permanently."),
                    .problem("503", "A stage's dependency is not reachable; try again."),
                ]),
        ]
    }()
}
