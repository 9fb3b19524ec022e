/// One versioned schema change.
public struct Migration: Sendable {
    /// Applied in increasing order; never reuse or renumber one that has shipped.
    public var version: Int
    /// A short name, recorded in the ledger.
    public var name: String
    /// Fixed SQL (several statements allowed). Runs in one transaction with its ledger row.
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

extension Migration {
    /// The schema of this build, in order.
    public static let all: [Migration] = [
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
        Migration(version: 2, name: "sink", sql: """
            -- Rows written by the 'sink' function that proves the runtime: no unique key on
            -- event_id, so that a duplicate delivery would show as a second row.
            CREATE TABLE sink_events (
                job_id     uuid,
                event_id   text,
                event      jsonb NOT NULL,
                chunk_id   text NOT NULL,
                loaded_at  timestamptz NOT NULL DEFAULT clock_timestamp()
            );
            CREATE INDEX sink_events_job ON sink_events (job_id);
            -- One row per input chunk written, in the same transaction as its rows: a chunk
            -- delivered again after a crash finds its row and writes nothing. Stream entry
            -- ids are unique per stream only, so the key holds the stream as well.
            CREATE TABLE sink_chunks (
                function   text NOT NULL,
                stream     text NOT NULL,
                chunk_id   text NOT NULL,
                rows       integer NOT NULL,
                written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                PRIMARY KEY (function, stream, chunk_id)
            );
            """),
        Migration(version: 3, name: "lookups", sql: """
            -- Lookup tables of the enrich stage, seeded here; operators add rows with SQL.
            CREATE TABLE lookup_countries (
                code text PRIMARY KEY CHECK (code ~ '^[A-Z]{2}$'),
                name text NOT NULL
            );
            INSERT INTO lookup_countries (code, name) VALUES
                ('AR', 'Argentina'), ('AT', 'Austria'), ('AU', 'Australia'), ('BE', 'Belgium'),
                ('BR', 'Brazil'), ('CA', 'Canada'), ('CH', 'Switzerland'), ('CN', 'China'),
                ('CZ', 'Czechia'), ('DE', 'Germany'), ('DK', 'Denmark'), ('EG', 'Egypt'),
                ('ES', 'Spain'), ('FI', 'Finland'), ('FR', 'France'), ('GB', 'United Kingdom'),
                ('GR', 'Greece'), ('HU', 'Hungary'), ('ID', 'Indonesia'), ('IE', 'Ireland'),
                ('IL', 'Israel'), ('IN', 'India'), ('IT', 'Italy'), ('JP', 'Japan'),
                ('KE', 'Kenya'), ('KR', 'South Korea'), ('MX', 'Mexico'), ('NG', 'Nigeria'),
                ('NL', 'Netherlands'), ('NO', 'Norway'), ('NZ', 'New Zealand'), ('PL', 'Poland'),
                ('PT', 'Portugal'), ('RO', 'Romania'), ('SE', 'Sweden'), ('SG', 'Singapore'),
                ('TR', 'Türkiye'), ('UA', 'Ukraine'), ('US', 'United States'), ('ZA', 'South Africa');
            CREATE TABLE lookup_device_classes (
                device_type  text PRIMARY KEY,
                device_class text NOT NULL
            );
            INSERT INTO lookup_device_classes (device_type, device_class) VALUES
                ('mobile', 'handheld'), ('tablet', 'handheld'), ('desktop', 'computer'),
                ('laptop', 'computer'), ('tv', 'living_room'), ('console', 'living_room'),
                ('watch', 'wearable'), ('iot', 'embedded');
            """),
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
            -- Events that could not be processed, with why and where. One row per quarantined
            -- event: (stream, entry, position) is the event's place in the quarantine stream,
            -- so a redelivered entry writes nothing twice.
            CREATE TABLE quarantine (
                id          bigserial PRIMARY KEY,
                job_id      uuid,
                function    text NOT NULL,
                reason      text NOT NULL,
                line        integer,
                raw         text NOT NULL,
                stream      text NOT NULL,
                entry_id    text NOT NULL,
                position    integer NOT NULL,
                created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
                UNIQUE (stream, entry_id, position)
            );
            CREATE INDEX quarantine_job ON quarantine (job_id);
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
            ALTER TABLE jobs ADD COLUMN schema jsonb;
            ALTER TABLE jobs ADD COLUMN content_type text;
            ALTER TABLE jobs ADD COLUMN bytes bigint;
            CREATE INDEX jobs_status ON jobs (status, created_at DESC);
            """),
        Migration(version: 6, name: "analytics", sql: """
            -- The analytics summary scans a time range and counts types and distinct users:
            -- with user_id in the index it never reads the table.
            CREATE INDEX events_time_type_user ON events (event_time, event_type) INCLUDE (user_id);
            DROP INDEX events_time_type;
            """),
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
        Migration(version: 8, name: "analytics_rollups", sql: """
            -- The analytics summary reads per-minute and per-hour rollups instead of the events:
            -- counts by event type and a distinct-user sketch (exact up to 512 users, else
            -- HyperLogLog registers; see DistinctSketch.swift). Buckets are Unix seconds, aligned
            -- to UTC minutes (width 60) and hours (width 3600). One row per type and one for all
            -- types (all_types, event_type NULL) per bucket. Only the warehouse's refresher writes it.
            CREATE TABLE events_rollup (
                width      integer NOT NULL CHECK (width IN (60, 3600)),
                bucket     bigint NOT NULL,
                all_types  boolean NOT NULL,
                event_type text,
                events     bigint NOT NULL,
                users      bigint NOT NULL,   -- the sketch's count: a window of one bucket reads no sketch
                users_exact boolean NOT NULL, -- whether users is exact (the sketch holds hashes, not registers)
                sketch     bytea NOT NULL,
                UNIQUE NULLS NOT DISTINCT (width, bucket, all_types, event_type)
            );
            -- What changed since the refresher last ran, written by the triggers below in the
            -- writer's own transaction: for inserted rows, their count and distinct user hashes
            -- per minute and type; for updated or deleted rows, a mark that the minute must be
            -- counted again from the events (a sketch cannot subtract). Append-only: writers never
            -- wait for each other here. The summary adds what is pending to the rollups, so its
            -- counts are exact whether or not the refresher has caught up.
            CREATE TABLE events_rollup_delta (
                id         bigserial PRIMARY KEY,
                bucket     bigint NOT NULL,
                event_type text,
                events     bigint NOT NULL DEFAULT 0,
                hashes     bigint[] NOT NULL DEFAULT '{}',
                recompute  boolean NOT NULL DEFAULT false
            );
            CREATE INDEX events_rollup_delta_bucket ON events_rollup_delta (bucket);

            CREATE FUNCTION events_rollup_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO events_rollup_delta (bucket, event_type, events, hashes)
                SELECT (floor(extract(epoch FROM event_time) / 60) * 60)::bigint, event_type, count(*),
                       coalesce(array_agg(DISTINCT hashtextextended(user_id, 0)) FILTER (WHERE user_id IS NOT NULL), '{}')
                FROM inserted_rows WHERE event_time IS NOT NULL
                GROUP BY 1, 2;
                RETURN NULL;
            END $$;
            CREATE FUNCTION events_rollup_updated() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO events_rollup_delta (bucket, recompute)
                SELECT DISTINCT (floor(extract(epoch FROM t) / 60) * 60)::bigint, true
                FROM (SELECT o.event_time, n.event_time FROM old_rows o JOIN new_rows n USING (event_id)
                      WHERE o.event_time IS DISTINCT FROM n.event_time OR o.event_type IS DISTINCT FROM n.event_type
                         OR o.user_id IS DISTINCT FROM n.user_id) AS changed (before, after),
                     LATERAL (VALUES (before), (after)) AS times (t)
                WHERE t IS NOT NULL;
                RETURN NULL;
            END $$;
            CREATE FUNCTION events_rollup_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO events_rollup_delta (bucket, recompute)
                SELECT DISTINCT (floor(extract(epoch FROM event_time) / 60) * 60)::bigint, true
                FROM deleted_rows WHERE event_time IS NOT NULL;
                RETURN NULL;
            END $$;
            CREATE FUNCTION events_rollup_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                DELETE FROM events_rollup;
                DELETE FROM events_rollup_delta;
                RETURN NULL;
            END $$;
            CREATE TRIGGER events_rollup_insert AFTER INSERT ON events
                REFERENCING NEW TABLE AS inserted_rows FOR EACH STATEMENT EXECUTE FUNCTION events_rollup_inserted();
            CREATE TRIGGER events_rollup_update AFTER UPDATE ON events
                REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION events_rollup_updated();
            CREATE TRIGGER events_rollup_delete AFTER DELETE ON events
                REFERENCING OLD TABLE AS deleted_rows FOR EACH STATEMENT EXECUTE FUNCTION events_rollup_deleted();
            CREATE TRIGGER events_rollup_truncate AFTER TRUNCATE ON events
                FOR EACH STATEMENT EXECUTE FUNCTION events_rollup_truncated();

            -- Rows loaded before this migration: their minutes are marked for counting from the events.
            INSERT INTO events_rollup_delta (bucket, recompute)
            SELECT DISTINCT (floor(extract(epoch FROM event_time) / 60) * 60)::bigint, true FROM events WHERE event_time IS NOT NULL;
            """),
        Migration(version: 9, name: "privacy", sql: """
            -- Consent per subject and purpose. subject is the keyed pseudonym of the user id (the
            -- form the warehouse holds), never the id itself; purpose '*' is every purpose (an
            -- erasure records one). Of a subject's row for the purpose and its '*' row, the one
            -- changed last decides.
            CREATE TABLE consents (
                subject     text NOT NULL,
                purpose     text NOT NULL,
                granted     boolean NOT NULL,
                source      text NOT NULL CHECK (source IN ('api', 'erasure')),
                updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
                PRIMARY KEY (subject, purpose)
            );
            -- Who read or changed what through the API, and every consent change, erasure and
            -- dead-letter redrive. subject is a pseudonym too. Append-only: the triggers below
            -- refuse UPDATE, DELETE and TRUNCATE, whoever asks.
            CREATE TABLE audit_log (
                id          bigserial PRIMARY KEY,
                at          timestamptz NOT NULL DEFAULT clock_timestamp(),
                actor       text NOT NULL,
                action      text NOT NULL,
                resource    text NOT NULL,
                subject     text,
                request_id  text,
                status      integer,
                detail      jsonb
            );
            CREATE INDEX audit_log_actor ON audit_log (actor, id);
            CREATE INDEX audit_log_action ON audit_log (action, id);
            CREATE INDEX audit_log_subject ON audit_log (subject, id) WHERE subject IS NOT NULL;
            CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
            END $$;
            CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
                FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
            CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
                FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
            """),
        Migration(version: 10, name: "notifications", sql: """
            -- Where a job's end is announced besides the configured channels (given at upload).
            ALTER TABLE jobs ADD COLUMN callback_url text;
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
            ALTER TABLE async_calls ADD COLUMN trace_id text CHECK (trace_id ~ '^[0-9a-f]{32}$');
            """),
        Migration(version: 12, name: "erasure by pseudonym", sql: """
            -- Erasure deletes by equality on the subject's pseudonym, never by a search of the
            -- text. A quarantine row's subject is the pseudonym at its event's user fields,
            -- filled when quarantine writes it (NULL for a record that did not parse: its user
            -- id cannot be told). A call's subjects are the pseudonyms of the user ids of its
            -- events, filled when it is queued; NULL for a call queued before this migration,
            -- filled by the privacy function (which holds the key) at the next erasure.
            ALTER TABLE quarantine ADD COLUMN subject text CHECK (subject ~ '^u_[a-p]{32}$');
            CREATE INDEX quarantine_subject ON quarantine (subject) WHERE subject IS NOT NULL;
            ALTER TABLE async_calls ADD COLUMN subjects text[];
            CREATE INDEX async_calls_subjects ON async_calls USING gin (subjects);
            -- Erased subjects and when: the load and quarantine stages check it in the
            -- transaction that writes, so the events of a subject erased while they were on their
            -- way are never stored (a grant recorded after the erasure lets later events through).
            CREATE TABLE erasures (
                subject    text PRIMARY KEY CHECK (subject ~ '^u_[a-p]{32}$'),
                erased_at  timestamptz NOT NULL DEFAULT clock_timestamp()
            );
            -- The events of erased subjects a chunk held, so that a chunk delivered again after a
            -- crash answers the same outcomes.
            ALTER TABLE load_ledger ADD COLUMN erased text[] NOT NULL DEFAULT '{}';
            -- Backfill: rows quarantined by a stage hold the event as JSON, its user id already a
            -- pseudonym (quarantine's pii-mask); rows whose text is not a JSON object keep NULL.
            DO $$
            DECLARE
                r record;
                j jsonb;
                who text;
            BEGIN
                FOR r IN SELECT id, raw FROM quarantine WHERE raw LIKE '{%' LOOP
                    BEGIN
                        j := r.raw::jsonb;
                    EXCEPTION WHEN others THEN
                        CONTINUE;
                    END;
                    IF jsonb_typeof(j) <> 'object' THEN CONTINUE; END IF;
                    who := COALESCE(
                        CASE WHEN jsonb_typeof(j -> 'user') = 'object' THEN j -> 'user' ->> 'id' END,
                        j ->> 'user_id');
                    IF who ~ '^u_[a-p]{32}$' THEN
                        UPDATE quarantine SET subject = who WHERE id = r.id;
                    END IF;
                END LOOP;
            END $$;
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
            ALTER TABLE jobs ADD COLUMN created_by text CHECK (created_by ~ '^[0-9a-f]{64}$');
            ALTER TABLE async_calls ADD COLUMN created_by text CHECK (created_by ~ '^[0-9a-f]{64}$');
            CREATE INDEX jobs_created_by ON jobs (created_by, created_at DESC) WHERE created_by IS NOT NULL;
            """),
    ]

    /// The newest version of this build.
    public static var latestVersion: Int { all.map(\.version).max() ?? 0 }
}
