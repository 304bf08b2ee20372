-- Publishable client keys (Stack Auth's x-stack-publishable-client-key, ledger/clients.py):
-- the key's SHA-256 and its project on the client's row; the Stack Auth token route finds
-- the client by the hash.

alter table clients
    add column publishable_key_hash    text,
    add column publishable_key_project text;

create unique index clients_publishable_key_hash_idx on clients (publishable_key_hash)
    where publishable_key_hash is not null;
