ALTER TABLE images ADD COLUMN config_format TEXT NOT NULL DEFAULT 'config-2';
