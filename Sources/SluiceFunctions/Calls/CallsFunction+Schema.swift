import SluicePostgres

extension CallsFunction {
    /// The `async_calls` table.
    /// Its parts of the pipeline's migrations (``PipelineSchema``): versions are shared by
    /// every owner and never renumbered.
    static let schema: [Migration] = [
        Migration(version: 7, name: "async_calls", sql: """
            -- Asynchronous invocations of event functions and the delivery of their outcomes to
            -- the caller's callback URL.
            CREATE TABLE async_calls (
                id                 uuid PRIMARY KEY,
                function           text NOT NULL,
                status             text NOT NULL DEFAULT 'queued'
                                   CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
                events             jsonb NOT NULL,
                outcomes           jsonb,
                error              jsonb,
                callback_url       text,
                callback_status    text CHECK (callback_status IN ('pending', 'delivered', 'failed')),
                callback_attempts  integer NOT NULL DEFAULT 0,
                callback_error     text,
                next_attempt_at    timestamptz,
                created_at         timestamptz NOT NULL DEFAULT now(),
                started_at         timestamptz,
                finished_at        timestamptz
            );
            CREATE INDEX async_calls_waiting ON async_calls (created_at) WHERE status IN ('queued', 'running');
            CREATE INDEX async_calls_callbacks ON async_calls (next_attempt_at) WHERE callback_status = 'pending';
            """),
        Migration(version: 11, name: "trace ids", sql: """
            -- The W3C trace id of the upload a delivery announces, and of the request that queued
            -- an async call: webhooks and callbacks carry it as `traceparent`, so that a receiver's
            -- spans join the caller's trace.
            ALTER TABLE async_calls ADD COLUMN trace_id text CHECK (trace_id ~ '^[0-9a-f]{32}$');
            """),
        Migration(version: 12, name: "erasure by pseudonym", sql: """
            -- A call's subjects are the pseudonyms of the user ids of its events, filled when it
            -- is queued; NULL for a call queued before this migration, filled by the privacy
            -- function (which holds the key) at the next erasure.
            ALTER TABLE async_calls ADD COLUMN subjects text[];
            CREATE INDEX async_calls_subjects ON async_calls USING gin (subjects);
            -- Calls whose events carry user ids already as pseudonyms get them now.
            UPDATE async_calls c SET subjects = ARRAY(
                SELECT DISTINCT s FROM jsonb_array_elements(c.events) e,
                    LATERAL (VALUES (CASE WHEN jsonb_typeof(e -> 'user') = 'object' THEN e -> 'user' ->> 'id' END), (e ->> 'user_id')) v(s)
                WHERE s ~ '^u_[a-p]{32}$')
            WHERE jsonb_typeof(c.events) = 'array'
              AND NOT EXISTS (
                SELECT 1 FROM jsonb_array_elements(c.events) e,
                    LATERAL (VALUES (CASE WHEN jsonb_typeof(e -> 'user') = 'object' THEN e -> 'user' ->> 'id' END), (e ->> 'user_id')) v(s)
                WHERE s IS NOT NULL AND s !~ '^u_[a-p]{32}$');
            """),
        Migration(version: 13, name: "ownership", sql: """
            -- Who created a job or an async call: the SHA-256 (hex) of the caller's verified
            -- subject. Its creator and admin see a row (analysts too for jobs when ingest's
            -- config.read_all_jobs says so); rows from before have none and only admin sees them.
            ALTER TABLE async_calls ADD COLUMN created_by text CHECK (created_by ~ '^[0-9a-f]{64}$');
            """),
    ]
}
