-- Networks across hosts (VXLAN): each host's underlay ("tunnel") address,
-- reported at registration (NULL: none, its networks stay on the host), and
-- one VXLAN network identifier per network, unique in the cloud.
ALTER TABLE hosts ADD COLUMN tunnel_ip TEXT;
ALTER TABLE networks ADD COLUMN vni BIGINT;
-- Existing networks are numbered 1, 2, ... in the order they were made.
UPDATE networks SET vni = numbered.n
FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, id) AS n FROM networks) AS numbered
WHERE networks.id = numbered.id;
CREATE UNIQUE INDEX networks_by_vni ON networks (vni);
