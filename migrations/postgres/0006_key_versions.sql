-- Key rotation that retires: each row names the master key version its fingerprint was made under (NULL: a row
-- from before, made under the oldest version); subject ids kept sealed so links can be re-fingerprinted;
-- fp_versions lists the versions value fingerprints may be under (0: legacy rows), so lookups ask under those
-- only. Rows offered under an older version than the newest listed are refused: a vault still on the old
-- keyring fails closed instead of giving a value a second token under a fingerprint nobody else asks for.
ALTER TABLE tokens ADD COLUMN fp_version INTEGER;
ALTER TABLE subject_tokens ADD COLUMN fp_version INTEGER;
ALTER TABLE volatile ADD COLUMN fp_version INTEGER;
CREATE TABLE subjects (
    subject_fp BYTEA PRIMARY KEY,
    fp_version INTEGER NOT NULL,
    key_version INTEGER NOT NULL,
    sealed_id BYTEA NOT NULL
);
CREATE TABLE fp_versions (version INTEGER PRIMARY KEY);
INSERT INTO fp_versions (version) VALUES (0);

-- Once per INSERT statement (a group commit's batch, a CVC's put): refused if a row is under a superseded version.
CREATE FUNCTION fp_version_current() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE fp_version < (SELECT MAX(version) FROM fp_versions)) THEN
        RAISE EXCEPTION 'fingerprint key version superseded: load the rotated keyring';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER fp_version_tokens AFTER INSERT ON tokens REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION fp_version_current();
CREATE TRIGGER fp_version_volatile AFTER INSERT ON volatile REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION fp_version_current();
