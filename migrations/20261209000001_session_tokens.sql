-- Console sessions are tokens issued from the token a person signed in
-- with; revoking that token revokes the sessions made from it.
ALTER TABLE sl_api_tokens
    ADD COLUMN parent_token_id uuid REFERENCES sl_api_tokens (token_id);
CREATE INDEX sl_api_tokens_parent ON sl_api_tokens (parent_token_id)
    WHERE parent_token_id IS NOT NULL;
