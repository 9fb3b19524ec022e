import SluicePostgres

extension DatasetStore {
    /// The catalog of datasets, and the schema that holds the tables of datasets made through
    /// the API. Its part of the pipeline's migrations (``PipelineSchema``).
    static let schema: [Migration] = [
        Migration(version: 14, name: "datasets", sql: """
            -- Every dataset's spec (fields, columns, key, chain) and its version: a stage that
            -- holds an older version than a chunk names reads it again.
            CREATE SCHEMA IF NOT EXISTS datasets;
            CREATE TABLE dataset_specs (
                name        text PRIMARY KEY,
                version     integer NOT NULL,
                spec        jsonb NOT NULL,
                origin      text NOT NULL,
                created_at  timestamptz NOT NULL DEFAULT now(),
                updated_at  timestamptz NOT NULL DEFAULT now()
            );
            """),
        Migration(version: 15, name: "dataset owners", sql: """
            -- Who created a dataset through the API (the SHA-256 of the subject, as jobs keep
            -- it): its owner may change its spec and replace or delete its records. NULL for a
            -- dataset from a file: admin and the roles its spec grants (`writers`) only.
            ALTER TABLE dataset_specs ADD COLUMN owner text;
            """),
    ]
}
