-- Provenance of feature rows: the transform version that computed a row, as
-- `name@version#sha256` (e.g. `indicators@1.0.0#9f86d0...`), NULL for rows
-- pushed by clients and for rows written before this migration. The same
-- column as migrations/sqlite/0005_provenance.sql; see there for why one
-- text column.
--
-- A nullable column without a default is a catalog change only: existing
-- rows are not rewritten and read back as NULL.
ALTER TABLE feature_rows ADD COLUMN provenance TEXT;
