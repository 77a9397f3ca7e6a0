-- Live records per class (the veil_tokens gauge), kept by triggers in the transactions that change them: a scrape
-- reads a few rows instead of counting the whole table. Each class's count is spread over 16 rows, picked by the
-- writing session's backend pid, so replicas committing at the same moment add to different rows instead of
-- queueing on one row lock; readers add the rows up (a row alone may be negative).
CREATE TABLE live_counts (
    class TEXT NOT NULL,
    slot SMALLINT NOT NULL,
    live BIGINT NOT NULL,
    PRIMARY KEY (class, slot)
);

-- Once per INSERT statement (a group commit's batch): the rows that went in, counted per class.
CREATE FUNCTION live_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO live_counts (class, slot, live)
    SELECT class, (pg_backend_pid() % 16)::smallint, COUNT(*) FROM inserted WHERE gone_at IS NULL GROUP BY class
    ON CONFLICT (class, slot) DO UPDATE SET live = live_counts.live + EXCLUDED.live;
    RETURN NULL;
END $$;

-- Once per row that changes its class or liveness (erasure, purge) or is deleted: out of the old count, into the
-- new one. Tokenisation's updates (last_used_at) and rewrapping (sealed, key_version) never fire it.
CREATE FUNCTION live_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.gone_at IS NULL THEN
        INSERT INTO live_counts (class, slot, live) VALUES (OLD.class, (pg_backend_pid() % 16)::smallint, -1)
        ON CONFLICT (class, slot) DO UPDATE SET live = live_counts.live - 1;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.gone_at IS NULL THEN
        INSERT INTO live_counts (class, slot, live) VALUES (NEW.class, (pg_backend_pid() % 16)::smallint, 1)
        ON CONFLICT (class, slot) DO UPDATE SET live = live_counts.live + 1;
    END IF;
    RETURN NULL;
END $$;

-- The triggers come first: creating them locks out writers until this migration commits, so the count below
-- misses nothing another replica writes meanwhile.
CREATE TRIGGER live_counts_insert AFTER INSERT ON tokens REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION live_counts_inserted();
CREATE TRIGGER live_counts_update AFTER UPDATE OF class, gone_at ON tokens FOR EACH ROW
    WHEN (OLD.class IS DISTINCT FROM NEW.class OR (OLD.gone_at IS NULL) <> (NEW.gone_at IS NULL))
    EXECUTE FUNCTION live_counts_changed();
CREATE TRIGGER live_counts_delete AFTER DELETE ON tokens FOR EACH ROW WHEN (OLD.gone_at IS NULL)
    EXECUTE FUNCTION live_counts_changed();

INSERT INTO live_counts (class, slot, live)
SELECT class, 0, COUNT(*) FROM tokens WHERE gone_at IS NULL GROUP BY class;
