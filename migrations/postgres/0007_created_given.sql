-- Whether a feature row's created time was given by its writer rather than
-- stamped with the server's clock; only given times are compared against a
-- point-in-time read's `created_cutoff`. The same column as
-- migrations/sqlite/0007_created_given.sql; see there for why, and for why
-- older rows read as stamped.
--
-- A NOT NULL column with a constant default is a catalog change only: no
-- existing row is rewritten.
ALTER TABLE feature_rows ADD COLUMN created_given BOOLEAN NOT NULL DEFAULT FALSE;
