-- Every change of an API token is announced, so that every process serving
-- the API forgets its cached verification of that token at once
-- (gateway/src/auth.rs, `Tokens`; docs/http-api.md).
--
-- The payload on channel sl_api_tokens is the hex SHA-256 of the token's
-- secret (its secret_hash), or '*' when the table is truncated. A trigger
-- rather than the Rust code that revokes: a token revoked, changed or
-- deleted by any means (`shareledger token revoke`, an operator's SQL) is
-- announced. NOTIFY is sent at commit, so nothing is heard of a change
-- that rolls back.

CREATE FUNCTION sl_api_tokens_notify() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('sl_api_tokens', '*');
        RETURN NULL;
    END IF;
    PERFORM pg_notify('sl_api_tokens', encode(OLD.secret_hash, 'hex'));
    IF TG_OP = 'UPDATE' AND NEW.secret_hash IS DISTINCT FROM OLD.secret_hash THEN
        PERFORM pg_notify('sl_api_tokens', encode(NEW.secret_hash, 'hex'));
    END IF;
    RETURN NULL;
END;
$fn$;

CREATE TRIGGER sl_api_tokens_changed
    AFTER UPDATE OR DELETE ON sl_api_tokens
    FOR EACH ROW EXECUTE FUNCTION sl_api_tokens_notify();

CREATE TRIGGER sl_api_tokens_truncated
    AFTER TRUNCATE ON sl_api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION sl_api_tokens_notify();
