-- The addresses and routes each host reported for itself (JSON of
-- nubis_api::agent::HostAddressing); no tenant network may overlap them.
-- NULL until the host's agent reports them.
ALTER TABLE hosts ADD COLUMN addressing TEXT;
