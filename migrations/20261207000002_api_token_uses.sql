-- When each API token was last used (shown by `GET /v1/tokens` and
-- `shareledger token list`). Kept apart from sl_api_tokens: recording a use
-- is not a change of the token, so it announces nothing (the trigger on
-- sl_api_tokens makes every process forget a changed token). A process
-- records a use when it verifies the token against the database, which it
-- does at least every 10 seconds per token it serves (gateway/src/auth.rs,
-- CACHE_TTL): "last used" is exact to that.

CREATE TABLE sl_api_token_uses (
    token_id     uuid        PRIMARY KEY REFERENCES sl_api_tokens (token_id) ON DELETE CASCADE,
    last_used_at timestamptz NOT NULL
);
