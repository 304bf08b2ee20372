-- Resource servers (ledger/resources.py): the read model of the 'resource:<url>' streams.
-- A removed resource keeps its row (removed_at set) so the history reads the same.

create table resources (
    url           text primary key,
    scopes        text[] not null,
    registered_at timestamptz not null,
    removed_at    timestamptz,
    version       integer not null
);
