-- Paginated server lists (GET /v1/servers?limit=&marker=) walk a project's
-- servers in (created_at, id) order: one index range scan per page instead
-- of a sort of the whole project.
CREATE INDEX servers_by_project ON servers (project_id, created_at, id);
