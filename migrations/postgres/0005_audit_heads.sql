-- The head of each audit log (sequence number and hash of its last acknowledged line), outside the log file:
-- one row per log (vault replicas each keep their own log), moved compare-and-swap on every group commit.
CREATE TABLE audit_heads (
    log_id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
