-- A user's tokens, for the users list's last sign-in (the latest use of any
-- of the user's tokens, projections/src/dashboard/queries.rs).
CREATE INDEX sl_api_tokens_user ON sl_api_tokens (site_id, user_id) WHERE user_id IS NOT NULL;
