import SluicePostgres

extension JobStore {
    /// The `jobs` table: one row per upload, its status (a ``JobStatus``), format, schema and final counts.
    /// Its parts of the pipeline's migrations (``PipelineSchema``): versions are shared by
    /// every owner and never renumbered.
    static let schema: [Migration] = [
        Migration(version: 1, name: "jobs", sql: """
            CREATE TABLE jobs (
                id           uuid PRIMARY KEY,
                status       text NOT NULL DEFAULT 'received'
                             CHECK (status IN ('received', 'processing', 'completed', 'failed', 'cancelled')),
                format       text,
                counts       jsonb NOT NULL DEFAULT '{}'::jsonb,
                error        text,
                created_at   timestamptz NOT NULL DEFAULT now(),
                updated_at   timestamptz NOT NULL DEFAULT now(),
                finished_at  timestamptz
            );
            CREATE INDEX jobs_created_at ON jobs (created_at DESC);
            """),
        Migration(version: 5, name: "pipeline", sql: """
            ALTER TABLE jobs ADD COLUMN schema jsonb;
            ALTER TABLE jobs ADD COLUMN content_type text;
            ALTER TABLE jobs ADD COLUMN bytes bigint;
            CREATE INDEX jobs_status ON jobs (status, created_at DESC);
            """),
        Migration(version: 10, name: "notifications", sql: """
            -- Where a job's end is announced besides the configured channels (given at upload).
            ALTER TABLE jobs ADD COLUMN callback_url text;
            """),
        Migration(version: 13, name: "ownership", sql: """
            -- Who created a job or an async call: the SHA-256 (hex) of the caller's verified
            -- subject. Its creator and admin see a row (analysts too for jobs when ingest's
            -- config.read_all_jobs says so); rows from before have none and only admin sees them.
            ALTER TABLE jobs ADD COLUMN created_by text CHECK (created_by ~ '^[0-9a-f]{64}$');
            CREATE INDEX jobs_created_by ON jobs (created_by, created_at DESC) WHERE created_by IS NOT NULL;
            """),
        Migration(version: 14, name: "datasets", sql: """
            -- The dataset a job's records belong to (NULL: events, for jobs from before).
            ALTER TABLE jobs ADD COLUMN dataset text;
            """),
        Migration(version: 16, name: "function roles", sql: """
            -- A job's status under a share lock, for load's transaction: FOR SHARE needs the UPDATE
            -- privilege, which load's own role (``DatabaseRoles``) must not have. Runs as the
            -- schema's owner; only the roles granted EXECUTE may call it.
            CREATE FUNCTION job_status_for_loading(job uuid) RETURNS text
                LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$ SELECT status FROM jobs WHERE id = job FOR SHARE $$;
            REVOKE ALL ON FUNCTION job_status_for_loading(uuid) FROM PUBLIC;
            """),
    ]
}
