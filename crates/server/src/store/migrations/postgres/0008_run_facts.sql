-- What a verified run's own results say, kept with its attempt for the lists: the
-- devices it ran on (name, vendor, model, firmware as declared), and how long it ran.

ALTER TABLE attempts ADD COLUMN devices TEXT;
ALTER TABLE attempts ADD COLUMN run_ms BIGINT;
