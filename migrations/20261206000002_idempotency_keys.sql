-- Idempotency keys of the HTTP gateway's commands, as
-- draft-ietf-httpapi-idempotency-key-header says (gateway/src/idempotency.rs,
-- docs/http-api.md).
--
-- One row per key (already scoped by the gateway to the token and the
-- command): the fingerprint of the first request sent with it, who runs it
-- now, and its result once it succeeded.
--   * A send whose fingerprint differs from the row's is refused (422
--     idempotency_key_reused): a key names one request.
--   * A send that finds the row claimed by a running request is refused
--     (409 idempotency_key_in_flight): exactly one runs at a time, in every
--     process on this database.
--   * A send that finds the result gets it back, replayed.
-- A claim is a lease: a process that died while running a key leaves a
-- claim that lapses at lease_until, and the next send takes the key over
-- (the command's event ids derive from the key, so what the dead process
-- wrote is found, not written twice). A request that failed gives its
-- claim back and keeps its fingerprint: the same request may be sent
-- again, another one may not.

CREATE TABLE sl_idempotency_keys (
    scoped_key  uuid        PRIMARY KEY,
    command     text        NOT NULL,
    -- SHA-256 of the command name and the canonical JSON body
    fingerprint bytea       NOT NULL CHECK (length(fingerprint) = 32),
    -- the running request's claim and until when it holds; NULL when none runs
    claim       uuid,
    lease_until timestamptz,
    -- the first success's answer (the gateway's CommandResult)
    result      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CHECK ((claim IS NULL) = (lease_until IS NULL)),
    CHECK (result IS NULL OR claim IS NULL),
    CHECK ((result IS NULL) = (finished_at IS NULL))
);
