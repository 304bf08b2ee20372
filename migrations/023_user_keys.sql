-- Crypto-shredding of personal data (ledger/personal.py, app/adapters/user_keys.py).
--
-- Every user has a 32-byte data key that seals the personal fields of their events;
-- deleting the row shreds them (`tokenledger users erase`). Not a read model: like
-- signing_keys it cannot be rebuilt from the log, by design. `lookup` is the
-- HMAC-SHA-256 of the normalized username under an instance secret, so the username
-- itself is stored nowhere; it is unique, which keeps usernames unique.
create table user_keys (
    user_id    text primary key,
    lookup     text not null unique,
    data_key   bytea not null,
    sealed     boolean not null,  -- wrapped with AES-256-GCM under the key-encryption secret
    created_at timestamptz not null default now()
);

-- The users read model is keyed by user id now (streams 'user:<user_id>'); rows folded
-- from version-1 events hold their values marked 'plain:' (ledger/events.py upcaster).
alter table users drop constraint users_pkey;
alter table users drop constraint users_user_id_key;
alter table users add primary key (user_id);
alter table users add column erased_at timestamptz;
update users set username = 'plain:' || username, password_hash = 'plain:' || password_hash;
-- Sign-in by name for users registered before encryption (no user_keys row).
create index users_legacy_username on users (username) where username like 'plain:%';

-- session_started no longer carries the username (version 2).
alter table sessions drop column username;
