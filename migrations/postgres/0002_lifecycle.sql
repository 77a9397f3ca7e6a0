-- Lifecycle: tombstones (erased or purged records keep their token), subject links, purge index.
ALTER TABLE tokens ADD COLUMN gone_at BIGINT;
CREATE TABLE subject_tokens (
    subject_fp BYTEA NOT NULL,
    class TEXT NOT NULL,
    token TEXT NOT NULL,
    PRIMARY KEY (subject_fp, class, token)
);
CREATE INDEX subject_tokens_by_token ON subject_tokens (class, token);
CREATE INDEX tokens_by_last_use ON tokens (class, last_used_at) WHERE gone_at IS NULL;
