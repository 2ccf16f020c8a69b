-- Dashboard sessions: the SHA-256 of the session cookie (random, 256 bits), whose
-- it is, its form token (CSRF), and until when it works. Ended at logout; never
-- deleted here (the audit log names logins and logouts).

CREATE TABLE web_sessions (
    sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name),
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT
);
