-- The audit trail: one row per state-changing API call, refused ones
-- included. `id` is a UUIDv7, so its order is the order of time (and the
-- marker of pagination); `time` is Unix milliseconds.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    time BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    initiator TEXT NOT NULL,
    user_id TEXT,
    user_name TEXT,
    project_id TEXT,
    host_id TEXT,
    source_address TEXT,
    user_agent TEXT,
    action TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    object_type TEXT,
    object_id TEXT,
    status BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT
);
CREATE INDEX audit_events_by_time ON audit_events (time);
CREATE INDEX audit_events_by_user ON audit_events (user_id, id);
CREATE INDEX audit_events_by_project ON audit_events (project_id, id);
CREATE INDEX audit_events_by_action ON audit_events (action, id);
