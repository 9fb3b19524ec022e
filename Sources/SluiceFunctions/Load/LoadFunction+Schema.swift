import SluicePostgres

extension LoadFunction {
    /// The warehouse table `events` and the load ledger.
    /// Its parts of the pipeline's migrations (``PipelineSchema``): versions are shared by
    /// every owner and never renumbered.
    static let schema: [Migration] = [
        Migration(version: 4, name: "warehouse", sql: """
            -- The warehouse: one row per loaded event. received_at is when ingest accepted the
            -- event, loaded_at the clock time the load stage wrote it: latency is in the data.
            CREATE TABLE events (
                event_id     text PRIMARY KEY,
                job_id       uuid,
                event_type   text,
                event_time   timestamptz,
                user_id      text,
                session_id   text,
                source       text,
                version      text,
                device_type  text,
                device_class text,
                os_version   text,
                app_version  text,
                country      text,
                country_name text,
                region       text,
                properties   jsonb,
                custom_data  jsonb,
                attributes   jsonb,
                received_at  timestamptz NOT NULL,
                loaded_at    timestamptz NOT NULL DEFAULT clock_timestamp()
            );
            CREATE INDEX events_job ON events (job_id);
            CREATE INDEX events_time_type ON events (event_time, event_type);
            """),
        Migration(version: 5, name: "pipeline", sql: """
            -- One row per chunk the load stage committed, written in the same transaction, with
            -- the events it found already loaded: a chunk delivered again after a crash answers
            -- the recorded outcome and inserts nothing.
            CREATE TABLE load_ledger (
                stream      text NOT NULL,
                chunk_id    text NOT NULL,
                loaded      integer NOT NULL,
                duplicates  text[] NOT NULL DEFAULT '{}',
                written_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
                PRIMARY KEY (stream, chunk_id)
            );
            CREATE INDEX load_ledger_written ON load_ledger (written_at);
            """),
        Migration(version: 6, name: "analytics", sql: """
            -- The analytics summary scans a time range and counts types and distinct users:
            -- with user_id in the index it never reads the table.
            CREATE INDEX events_time_type_user ON events (event_time, event_type) INCLUDE (user_id);
            DROP INDEX events_time_type;
            """),
        Migration(version: 12, name: "erasure by pseudonym", sql: """
            -- The events of erased subjects a chunk held, so that a chunk delivered again after a
            -- crash answers the same outcomes.
            ALTER TABLE load_ledger ADD COLUMN erased text[] NOT NULL DEFAULT '{}';
            """),
        Migration(version: 14, name: "datasets", sql: """
            -- The positions of the chunk's rows that were loaded and fenced: with rows of any
            -- dataset, and keys of several columns, a position names a row where an id could not.
            ALTER TABLE load_ledger ADD COLUMN loaded_positions integer[], ADD COLUMN erased_positions integer[];
            """),
    ]
}
