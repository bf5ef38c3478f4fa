-- liftoff: contract after-retiring 1.0.0
-- Every note gets a title. 1.0.0 inserts notes without one, so this must wait until no 1.0.0
-- instance can run: `liftoff migrate` holds it while 1.0.0 (or older) is active, staged, warm
-- or inside the stage's rollback window, and a container's start-up `migrate` never applies it.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

UPDATE notes
SET title = left(rtrim(split_part(btrim(body, E' \t\r\n'), E'\n', 1), E' \t\r'), 200)
WHERE title IS NULL;

-- Backward-incompatible on purpose (it is the contract step); notes is small, so the
-- validating scan under ACCESS EXCLUSIVE is brief.
-- squawk-ignore adding-not-nullable-field
ALTER TABLE notes ALTER COLUMN title SET NOT NULL;
