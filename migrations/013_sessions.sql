-- Browser sessions at the sign-in pages (ledger/sessions.py): the read model of the
-- 'session:<hash>' streams. The cookie's value is never stored, only its SHA-256.

create table sessions (
    session_hash text primary key,
    user_id      text not null,
    username     text not null,
    started_at   timestamptz not null,
    expires_at   timestamptz not null,
    ended_at     timestamptz,
    end_reason   text,
    version      integer not null
);

-- Ending every session of a user (`tokenledger users revoke-all`).
create index sessions_live_by_user on sessions (user_id) where ended_at is null;
