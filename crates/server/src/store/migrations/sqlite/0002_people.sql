-- People and lab-host enrollment, SQLite dialect. Kept in step with ../postgres/0002_people.sql.
-- No secret is stored as given: passwords as argon2 PHC strings, tokens as their SHA-256.

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('technician', 'tester', 'manager', 'admin')),
    password_hash TEXT,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
);

-- API tokens: the SHA-256 of the token (random, 256 bits: no slow hash needed), whose
-- it is, and until when it works.
CREATE TABLE api_tokens (
    sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

-- One-time tokens with which a lab host enrolls: used once (used_at set), or never after expires_at.
CREATE TABLE enrollment_tokens (
    sha256 TEXT PRIMARY KEY,
    labhost TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
