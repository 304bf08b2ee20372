-- The audit reads select whole streams by client, subject or family (ledger/store.py,
-- EventFilter.stream_sets) and list a client's or subject's families newest first
-- (projections/audit.py, families_where): index every lookup they make, so that none
-- scans a read model and the family lists read their first page straight off an index.

create index authorization_codes_client_idx on authorization_codes (client_id);
create index authorization_codes_subject_idx on authorization_codes (subject);
-- All of a user's sessions, ended ones included (sessions_live_by_user has only live ones).
create index sessions_user_idx on sessions (user_id);

-- These lead with the columns of the old single-column indexes, which they replace.
create index token_families_client_started_idx
    on token_families (client_id, started_at desc, family_id);
create index token_families_subject_started_idx
    on token_families (subject, started_at desc, family_id);
drop index token_families_client_idx;
drop index token_families_subject_idx;
