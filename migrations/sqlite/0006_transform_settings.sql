-- Admin settings of a transform beside its lifecycle, as JSON text:
-- {"shadow": {"version", "tolerance", "started_at"}, "limits": {...}}.
-- One column rather than one per setting: settings are read and written
-- whole, and new ones need no migration. Never edit once landed.
ALTER TABLE transforms ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
