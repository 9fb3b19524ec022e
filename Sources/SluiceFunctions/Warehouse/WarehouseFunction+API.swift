import Sluice
import SluiceHTTP

extension WarehouseFunction {
    /// The public routes the warehouse function answers, as the OpenAPI document describes them.
    public static let operations: [APIOperation] = {
        let eventID = APIOperation.Parameter("event_id", in: .path, description: "The record's event_id.", schema: APISchemas.string)
        let datasetName = APIOperation.Parameter("name", in: .path, description: "The dataset's name.", schema: APISchemas.string)
        let recordKey = APIOperation.Parameter("key", in: .path,
                                               description: "The record's key: its value, or for a key of several columns their values comma-separated (or a JSON array).",
                                               schema: APISchemas.string)
        let unavailable = APIOperation.Response.problem("503", "The warehouse is not reachable; try again.")
        let time: JSONValue = ["type": "string", "format": "date-time"]
        return [
            APIOperation(
                "GET", "/api/v1/datasets", id: "listDatasets", summary: "Every dataset, with its row count, bytes and last load", tag: "datasets",
                responses: [.json("200", "The datasets, by name.", APISchemas.ref("DatasetList")), unavailable]),
            APIOperation(
                "GET", "/api/v1/datasets/{name}", id: "getDataset", summary: "A dataset: its spec, counts and a profile of every column", tag: "datasets",
                parameters: [.init("name", in: .path, description: "The dataset's name.", schema: APISchemas.string)],
                responses: [
                    .json("200", "The dataset.", APISchemas.ref("DatasetDetail")),
                    .problem("404", "No dataset has this name."),
                    unavailable,
                ]),
            APIOperation(
                "GET", "/api/v1/datasets/{name}/records", id: "listDatasetRecords",
                summary: "A dataset's records in key order, a page at a time, filtered by column values", tag: "datasets",
                parameters: [
                    datasetName,
                    .init("limit", in: .query, description: "Records per page (1–1000, default 50).",
                          schema: ["type": "integer", "minimum": 1, "maximum": 1000, "default": 50]),
                    .init("after", in: .query, description: "The next_cursor of the previous page.", schema: APISchemas.string),
                ],
                responses: [
                    .json("200", "A page of records; any other query parameter COLUMN=VALUE keeps the records whose column equals the value.",
                          APISchemas.ref("RecordPage")),
                    .problem("400", "A parameter is not a column, or a value not of its column's type (`parameter` names it), or the cursor is not this dataset's."),
                    .problem("404", "No dataset has this name."),
                    unavailable,
                ]),
            APIOperation(
                "GET", "/api/v1/datasets/{name}/records/{key}", id: "getDatasetRecord", summary: "One record of a dataset by its key", tag: "datasets",
                parameters: [datasetName, recordKey],
                responses: [
                    .json("200", "The record: its columns, job_id, received_at and loaded_at.", ["type": "object"]),
                    .problem("400", "The key is not the dataset's (invalid_key)."),
                    .problem("404", "No such dataset, or no record with this key."),
                    unavailable,
                ]),
            APIOperation(
                "PUT", "/api/v1/datasets/{name}/records/{key}", id: "replaceDatasetRecord",
                summary: "Replace a record's columns (a column left out becomes null; the key cannot change)", tag: "datasets",
                parameters: [datasetName, recordKey],
                requestBody: [("application/json", ["type": "object", "description": "The record's columns."])],
                responses: [
                    .json("200", "The record as stored now.", ["type": "object"]),
                    .problem("400", "Not a JSON object of columns, an unknown or fixed column, or a value of the wrong type (`field` names it)."),
                    .problem("404", "No such dataset, or no record with this key."),
                    .problem("413", "The body is larger than 1 MB."),
                    .notJSON,
                    unavailable,
                ]),
            APIOperation(
                "DELETE", "/api/v1/datasets/{name}/records/{key}", id: "deleteDatasetRecord",
                summary: "Delete a record (its key stays known: uploading it again counts as a duplicate)", tag: "datasets",
                parameters: [datasetName, recordKey],
                responses: [
                    .init("204", "Deleted."), .problem("400", "The key is not the dataset's (invalid_key)."),
                    .problem("404", "No such dataset, or no record with this key."), unavailable,
                ]),
            APIOperation(
                "GET", "/api/v1/data/{event_id}", id: "getRecord", summary: "One warehouse record", tag: "data",
                parameters: [eventID],
                responses: [.json("200", "The record.", APISchemas.ref("Record")), .problem("404", "No record has this event_id."), unavailable]),
            APIOperation(
                "PUT", "/api/v1/data/{event_id}", id: "replaceRecord",
                summary: "Replace a record's columns (a column left out becomes null; event_id, job_id, received_at and loaded_at cannot change)",
                tag: "data", parameters: [eventID],
                requestBody: [("application/json", APISchemas.ref("RecordChange"))],
                responses: [
                    .json("200", "The record as stored now.", APISchemas.ref("Record")),
                    .problem("400", "Not a JSON object of columns, an unknown or fixed column, or a value of the wrong type (`field` names it)."),
                    .problem("404", "No record has this event_id."),
                    .problem("413", "The body is larger than 1 MB."),
                    .notJSON,
                    unavailable,
                ]),
            APIOperation(
                "DELETE", "/api/v1/data/{event_id}", id: "deleteRecord",
                summary: "Delete a record (its event_id stays known: uploading it again counts as a duplicate)", tag: "data",
                parameters: [eventID],
                responses: [.init("204", "Deleted."), .problem("404", "No record has this event_id."), unavailable]),
            APIOperation(
                "GET", "/api/v1/analytics/summary", id: "analyticsSummary",
                summary: "Events, unique users and events by type over a time range, in total and per window (windows aligned to multiples of their length since 1970-01-01T00:00:00Z; the first and last may be cut short by from and to)", tag: "analytics",
                parameters: [
                    .init("from", in: .query, description: "Start of the range (inclusive); default one hour before `to`.", schema: time),
                    .init("to", in: .query, description: "End of the range (exclusive); default the end of the current UTC minute.", schema: time),
                    .init("window", in: .query, description: "Window length.", schema: ["type": "string", "enum": ["1m", "5m", "15m", "1h", "1d"], "default": "1m"]),
                    .init("event_type", in: .query, description: "Only events of this type.", schema: APISchemas.string),
                    .init("exact", in: .query,
                          description: "Count unique users exactly by reading every event of the range (slower) instead of from the rollups, whose unique_users are exact up to 512 users per minute and type and otherwise HyperLogLog estimates.",
                          schema: ["type": "boolean", "default": false]),
                ],
                responses: [
                    .json("200", "The summary; windows without events are left out.", APISchemas.ref("Summary")),
                    .problem("400", "A parameter is not valid, or the range is too large for the window (`parameter` names it)."),
                    unavailable,
                ]),
        ]
    }()
}
