-- Quotas on images (count, total GiB of files) and security groups and
-- their rules. NULL: the default limit (see nubis_api::quotas).
ALTER TABLE project_quotas ADD COLUMN images BIGINT;
ALTER TABLE project_quotas ADD COLUMN image_gib BIGINT;
ALTER TABLE project_quotas ADD COLUMN security_groups BIGINT;
ALTER TABLE project_quotas ADD COLUMN security_group_rules BIGINT;
