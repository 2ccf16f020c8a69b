-- The lab server's store, SQLite dialect. Kept in step with ../postgres/0001_initial.sql:
-- the same tables, columns and constraints; only types and triggers are spelled apart.
-- Times are milliseconds since the Unix epoch (the server's clock), as proto's UnixMillis.

-- One global fencing sequence. Every job assignment and every reservation takes the
-- next value; it only grows, and it lives here, so a restart never hands out a token
-- again (a lab host would admit a second holder under it).
CREATE TABLE fencing (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_issued INTEGER NOT NULL CHECK (last_issued >= 0)
);
INSERT INTO fencing (id, last_issued) VALUES (1, 0);

-- Lab hosts, as enrolled: the key they authenticate with and their last heartbeat.
CREATE TABLE labhosts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL,
    last_heartbeat INTEGER,
    online INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1))
);

-- Rigs as their lab host advertised them (the summary the scheduler reads; rig files
-- hold secret references only, and the server keeps only their digest), with their
-- state and the newest fencing token issued for each.
CREATE TABLE rigs (
    name TEXT PRIMARY KEY,
    labhost TEXT NOT NULL REFERENCES labhosts (id),
    sha256 TEXT NOT NULL,
    devices TEXT NOT NULL,
    roles TEXT NOT NULL,
    tags TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('idle', 'reserved', 'running', 'maintenance', 'bad', 'offline', 'retired')),
    reason TEXT NOT NULL,
    since INTEGER NOT NULL,
    changed_by TEXT NOT NULL,
    last_fencing INTEGER NOT NULL DEFAULT 0
);

-- Every state a rig was put in: append-only.
CREATE TABLE rig_states (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rig TEXT NOT NULL REFERENCES rigs (name),
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    changed_at INTEGER NOT NULL,
    changed_by TEXT NOT NULL
);
CREATE INDEX rig_states_by_rig ON rig_states (rig, id);

-- Submissions. The id is the queue order (AUTOINCREMENT: never reused).
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 100),
    submitted_by TEXT NOT NULL,
    submitted_at INTEGER NOT NULL,
    not_before INTEGER,
    target TEXT NOT NULL,
    params TEXT NOT NULL,
    device TEXT
);

-- Each job's plans: their file names and exact bytes, in the order they run.
CREATE TABLE job_plans (
    job INTEGER NOT NULL REFERENCES jobs (id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (job, position),
    UNIQUE (job, name)
);

-- Each attempt of a job: the first, and every retry, linked to the attempt it retries.
-- Both are kept, each with its state, rig, fencing token and run.
CREATE TABLE attempts (
    job INTEGER NOT NULL REFERENCES jobs (id),
    attempt INTEGER NOT NULL CHECK (attempt >= 1),
    retry_of INTEGER,
    state TEXT NOT NULL CHECK (state IN ('queued', 'assigned', 'running', 'uploading', 'verifying', 'done', 'lost', 'cancelled')),
    reason TEXT NOT NULL,
    rig TEXT REFERENCES rigs (name),
    fencing INTEGER UNIQUE,
    run_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (job, attempt),
    FOREIGN KEY (job, retry_of) REFERENCES attempts (job, attempt)
);
CREATE INDEX attempts_by_state ON attempts (state);

-- Live leases: a job's on its rig, or a person's reservation. At most one of each kind
-- per rig (a holder's own job runs inside their reservation). Named by the fencing
-- token it was granted under. Deleted when it ends; the audit log keeps its story.
CREATE TABLE leases (
    fencing INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('job', 'reservation')),
    rig TEXT NOT NULL REFERENCES rigs (name),
    holder TEXT NOT NULL,
    job INTEGER,
    attempt INTEGER,
    granted_at INTEGER NOT NULL,
    renewed_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    UNIQUE (rig, kind),
    CHECK ((kind = 'job') = (job IS NOT NULL AND attempt IS NOT NULL)),
    FOREIGN KEY (job, attempt) REFERENCES attempts (job, attempt)
);

-- Every reservation made: live while ended_at is null (and then it has a lease).
CREATE TABLE reservations (
    fencing INTEGER PRIMARY KEY,
    rig TEXT NOT NULL REFERENCES rigs (name),
    holder TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    until_at INTEGER NOT NULL,
    ended_at INTEGER,
    ended_by TEXT,
    end_reason TEXT
);
CREATE UNIQUE INDEX one_live_reservation_per_rig ON reservations (rig) WHERE ended_at IS NULL;

-- Who did what, when, from where: append-only.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    happened_at INTEGER NOT NULL,
    who TEXT NOT NULL,
    origin TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL
);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only: its rows are never updated or deleted'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only: its rows are never updated or deleted'); END;
CREATE TRIGGER rig_states_no_update BEFORE UPDATE ON rig_states BEGIN SELECT RAISE(ABORT, 'rig_states is append-only: its rows are never updated or deleted'); END;
CREATE TRIGGER rig_states_no_delete BEFORE DELETE ON rig_states BEGIN SELECT RAISE(ABORT, 'rig_states is append-only: its rows are never updated or deleted'); END;
