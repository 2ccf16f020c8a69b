-- Bench operations: a technician's power action or console session on a rig they
-- reserved, carried out by the rig's lab host under the reservation's fencing token.
-- Kept (never deleted) as the record of who touched which device when, and how it went.

CREATE TABLE bench_ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rig TEXT NOT NULL REFERENCES rigs (name),
    labhost TEXT NOT NULL,
    device TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('power_on', 'power_off', 'power_cycle', 'console')),
    fencing INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    answered_at INTEGER,
    outcome TEXT CHECK (outcome IN ('done', 'refused', 'failed', 'expired')),
    detail TEXT,
    closed_at INTEGER,
    close_reason TEXT
);
CREATE INDEX bench_ops_unanswered ON bench_ops (labhost) WHERE answered_at IS NULL;
CREATE INDEX bench_ops_by_rig ON bench_ops (rig, id);
