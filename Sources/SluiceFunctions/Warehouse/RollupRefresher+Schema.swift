import SluicePostgres

extension RollupRefresher {
    /// The analytics rollups of `events` and the triggers that feed them.
    /// Its parts of the pipeline's migrations (``PipelineSchema``): versions are shared by
    /// every owner and never renumbered.
    static let schema: [Migration] = [
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
    ]
}
