-- API keys (ledger/clients.py): whether a client requires an x-api-key, and its active
-- keys as parallel arrays of ids and SHA-256 hashes (the keys themselves are never stored).

alter table clients
    add column require_api_key boolean not null default false,
    add column api_key_ids     text[]  not null default '{}',
    add column api_key_hashes  text[]  not null default '{}';
