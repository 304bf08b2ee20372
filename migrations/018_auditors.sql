-- Auditors (ledger/auditors.py): the read model of the 'auditor:<name>' streams. The
-- token is never stored, only its SHA-256; /audit finds the auditor by it.

create table auditors (
    name          text primary key,
    token_hash    text not null unique,
    added_at      timestamptz not null,
    revoked_at    timestamptz,
    queries       bigint not null,
    last_query_at timestamptz,
    version       integer not null
);

-- /audit/events?since=&until= reads a time range of the log.
create index events_recorded_at_idx on events (recorded_at);
