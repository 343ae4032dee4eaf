-- The tamper-evident log: a hash chain over sl_events in global order
-- (events/src/store/chain.rs, docs/event-store.md "Integrity chain").
--
-- * sl_seals holds one seal per sealed event: event_hash is SHA-256 over the
--   event row's content (every column of sl_events, encoded unambiguously),
--   chain_hash is SHA-256 over the previous seal's chain_hash and this
--   event_hash. The hashes are computed by the sealer in Rust; the database
--   only stores them.
-- * Seals are written by a sealer that follows the log after commit, never by
--   sl_append: the append path is unchanged and appends never wait on the
--   chain. The sealer takes the one row of sl_seal_head FOR UPDATE, so two
--   sealers take turns and the chain never forks.
-- * sl_seals is append-only, as sl_events is (a trigger rejects UPDATE,
--   DELETE and TRUNCATE with SQLSTATE SL900). sl_seal_head is the sealer's
--   cursor: the last sealed position and its chain_hash.

CREATE TABLE sl_seals (
    global_position bigint      NOT NULL CHECK (global_position >= 1),
    event_hash      bytea       NOT NULL CHECK (octet_length(event_hash) = 32),
    chain_hash      bytea       NOT NULL CHECK (octet_length(chain_hash) = 32),
    sealed_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sl_seals_pkey PRIMARY KEY (global_position)
);

CREATE TABLE sl_seal_head (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- the last sealed position (0: nothing sealed yet)
    last_position   bigint  NOT NULL CHECK (last_position >= 0),
    -- its chain_hash (genesis: 32 zero bytes)
    chain_hash      bytea   NOT NULL CHECK (octet_length(chain_hash) = 32)
);
INSERT INTO sl_seal_head (singleton, last_position, chain_hash)
    VALUES (true, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);

CREATE FUNCTION sl_seals_reject_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'sl_seals is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'SL900';
END;
$fn$;
CREATE TRIGGER sl_seals_append_only_rows
    BEFORE UPDATE OR DELETE ON sl_seals
    FOR EACH ROW EXECUTE FUNCTION sl_seals_reject_change();
CREATE TRIGGER sl_seals_append_only_truncate
    BEFORE TRUNCATE ON sl_seals
    FOR EACH STATEMENT EXECUTE FUNCTION sl_seals_reject_change();
