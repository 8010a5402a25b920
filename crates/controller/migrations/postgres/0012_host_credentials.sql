-- Join tokens: single-use, expiring, stored by their SHA-256 only. An agent
-- presents one once to get its host certificate from the cluster CA.
CREATE TABLE join_tokens (
    hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
-- The SHA-256 of the host's current certificate (DER, hex): a certificate
-- issued earlier for the same host (before it joined again) is refused.
ALTER TABLE hosts ADD COLUMN cert_fingerprint TEXT;
