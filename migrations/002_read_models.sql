-- Read models folded from the log by the projections (projections/read_models.py).
-- Every column is a field of the matching state Struct in ledger/; these tables can be
-- dropped and rebuilt from events at any time (`tokenledger projections rebuild`).

create table clients (
    client_id             text primary key,
    name                  text not null,
    client_type           text not null check (client_type in ('public', 'confidential')),
    secret_hash           text,
    redirect_uris         text[] not null,
    scopes                text[] not null,
    rotate_refresh_tokens boolean not null,
    refresh_grace_seconds integer not null,
    access_token_ttl      integer,
    refresh_token_ttl     integer,
    audience              text,
    registered_at         timestamptz not null,
    version               integer not null
);

create table users (
    username      text primary key,
    user_id       text not null unique,
    password_hash text not null,
    registered_at timestamptz not null,
    version       integer not null
);

create table authorization_codes (
    code_hash      text primary key,
    client_id      text not null,
    subject        text not null,
    redirect_uri   text not null,
    code_challenge text not null,
    scope          text not null,
    resource       text,
    issued_at      timestamptz not null,
    expires_at     timestamptz not null,
    redeemed_at    timestamptz,
    family_id      text,
    replay_count   integer not null,
    version        integer not null
);

create table token_families (
    family_id              text primary key,
    client_id              text not null,
    subject                text not null,
    scope                  text not null,
    resource               text,
    audience               text not null,
    code_hash              text not null,
    status                 text not null check (status in ('active', 'revoked')),
    revoked_reason         text,
    revoked_at             timestamptz,
    generation             integer not null,
    current_hash           text not null,
    previous_hash          text,
    rotated_at             timestamptz,
    refresh_expires_at     timestamptz not null,
    last_access_token_jti  text not null,
    last_access_expires_at timestamptz not null,
    started_at             timestamptz not null,
    reuse_count            integer not null,
    version                integer not null
);
create index token_families_client_idx on token_families (client_id);
create index token_families_subject_idx on token_families (subject);

-- Every refresh token ever issued, by hash: a rotated one must still be recognised, so
-- that presenting it again is detected as reuse rather than an unknown token.
create table refresh_tokens (
    token_hash text primary key,
    family_id  text not null,
    generation integer not null
);
