-- Token records: (class, token) -> sealed value; one token per (class, value fingerprint).
CREATE TABLE tokens (
    class TEXT NOT NULL,
    token TEXT NOT NULL,
    value_fp BYTEA NOT NULL,
    key_version INTEGER NOT NULL,
    sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    PRIMARY KEY (class, token),
    UNIQUE (class, value_fp)
);
