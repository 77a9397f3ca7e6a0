-- Volatile secrets (CVCs), each bound to a card token's keyed fingerprint, kept until they expire or are used up.
CREATE TABLE volatile (
    bind_fp BYTEA PRIMARY KEY,
    key_version INTEGER NOT NULL,
    sealed BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    uses_left INTEGER NOT NULL
);
