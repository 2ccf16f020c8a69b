-- Rig health: each rig's health-check plan, how often it runs, and where the check,
-- its one repair (a power cycle) and the check after it stand. Kept in step with
-- ../postgres/0005_health.sql.

CREATE TABLE rig_health (
    rig TEXT PRIMARY KEY REFERENCES rigs (name),
    plan_name TEXT NOT NULL,
    plan BLOB NOT NULL,
    every_ms INTEGER NOT NULL CHECK (every_ms > 0),
    next_at INTEGER NOT NULL,
    stage TEXT NOT NULL CHECK (stage IN ('ok', 'check', 'repair', 'recheck', 'bad')),
    job INTEGER,
    last_result TEXT NOT NULL,
    set_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
