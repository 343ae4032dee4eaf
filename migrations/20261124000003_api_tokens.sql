-- API tokens of the HTTP gateway (gateway/src/auth.rs, docs/http-api.md).
--
-- Tokens are opaque: `sl_<48 hex characters>`, 192 random bits. Only their
-- SHA-256 is stored, so a copy of this table grants nothing. A token names
-- who it speaks for:
--   * user:     one user of one site (every request acts as that user);
--   * service:  a backend of one site, acting for a user of that site named
--               per request (header `ShareLedger-Act-As`);
--   * auditor:  reads history and access answers, of one site or (site_id
--               NULL) of every site; issues no commands;
--   * operator: runs the platform (registers sites, manages users of any
--               site); connections and sharing stay the sites' own.
-- Revoking sets revoked_at; an expired or revoked token is refused.

CREATE TABLE sl_api_tokens (
    token_id     uuid        PRIMARY KEY,
    secret_hash  bytea       NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    kind         text        NOT NULL CHECK (kind IN ('user', 'service', 'auditor', 'operator')),
    site_id      uuid,
    user_id      uuid,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    CHECK ((kind = 'user') = (user_id IS NOT NULL)),
    CHECK (kind NOT IN ('user', 'service') OR site_id IS NOT NULL),
    CHECK (kind <> 'operator' OR site_id IS NULL)
);
