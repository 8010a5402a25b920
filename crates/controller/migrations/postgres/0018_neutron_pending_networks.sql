-- A network made through OpenStack's Network API (`openstack network create`)
-- before its subnet: Nubis networks need a range, so it waits here, visible
-- only to the Neutron API, until `subnet create` gives it one and it becomes
-- a Nubis network with the same id (the row is deleted in that transaction).
CREATE TABLE neutron_pending_networks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
-- The name `subnet create` gave a network's one subnet (Nubis networks have
-- one name; a subnet without a row here shows its network's name).
CREATE TABLE neutron_subnet_names (
    network_id TEXT PRIMARY KEY REFERENCES networks(id) ON DELETE CASCADE,
    name TEXT NOT NULL
);
