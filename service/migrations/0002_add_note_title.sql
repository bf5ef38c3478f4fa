-- liftoff: expand
-- Release 1.1.0: an optional title. Nullable and without a default, so 1.0.0's inserts (which
-- name only body) and selects (which name their columns) are untouched while both run.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

ALTER TABLE notes ADD COLUMN title text;
