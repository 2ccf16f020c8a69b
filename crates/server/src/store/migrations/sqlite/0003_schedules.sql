-- Recurring runs, SQLite dialect. Kept in step with ../postgres/0003_schedules.sql.
-- A schedule submits its job template (a SubmitJob, as JSON) whenever its cron
-- expression fires in its time zone; `next_at` is when it is due next (NULL: never
-- again). A removed schedule is kept, disabled, for the record of the jobs it made.
CREATE TABLE schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    template TEXT NOT NULL,
    cron TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    next_at INTEGER,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    removed_by TEXT,
    removed_at INTEGER
);
CREATE INDEX schedules_due ON schedules (next_at) WHERE enabled = 1;
