-- Console links, stored hashed, so that any controller redeems a link once.
CREATE TABLE console_tokens (
    hash TEXT PRIMARY KEY,
    server_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_tokens_by_server ON console_tokens (server_id);
CREATE INDEX console_tokens_by_expiry ON console_tokens (expires_at);
-- Which controller runs a cluster-wide periodic job, and until when
-- (Unix milliseconds) unless it renews.
CREATE TABLE leader_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
