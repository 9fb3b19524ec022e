import SluicePostgres

extension NotifyFunction {
    /// The `deliveries` of job-end notifications.
    /// Its parts of the pipeline's migrations (``PipelineSchema``): versions are shared by
    /// every owner and never renumbered.
    static let schema: [Migration] = [
        Migration(version: 10, name: "notifications", sql: """
            -- One row per job end and channel, written by notify when it reads the jobs stream and
            -- updated by every attempt: a job is announced once per channel however often its
            -- stream entry is delivered. target names the destination without secrets (a Slack
            -- webhook URL is one): the URL is taken from the configuration when sending.
            CREATE TABLE deliveries (
                id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                job_id           uuid NOT NULL,
                event            text NOT NULL,
                channel          text NOT NULL CHECK (channel IN ('webhook', 'callback', 'slack', 'email')),
                target           text NOT NULL,
                payload          jsonb NOT NULL,
                status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead_lettered')),
                attempts         integer NOT NULL DEFAULT 0,
                last_status      integer,
                last_error       text,
                next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
                created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
                finished_at      timestamptz,
                UNIQUE (job_id, event, channel)
            );
            CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
            CREATE INDEX deliveries_job ON deliveries (job_id);
            """),
        Migration(version: 11, name: "trace ids", sql: """
            -- The W3C trace id of the upload a delivery announces, and of the request that queued
            -- an async call: webhooks and callbacks carry it as `traceparent`, so that a receiver's
            -- spans join the caller's trace.
            ALTER TABLE deliveries ADD COLUMN trace_id text CHECK (trace_id ~ '^[0-9a-f]{32}$');
            """),
    ]
}
