-- Key material: not events and not read models. Only the public half of a signing key
-- goes into the log (signing_key_created); the private half and the instance's session
-- secret live here, sealed with AES-256-GCM when TOKENLEDGER_KEY_ENCRYPTION_SECRET is set.

create table signing_keys (
    kid         text primary key,
    alg         text not null,
    private_key bytea not null,
    sealed      boolean not null,
    public_jwk  jsonb not null,
    created_at  timestamptz not null,
    retired_at  timestamptz
);

create table instance_secrets (
    name       text primary key,
    value      bytea not null,
    sealed     boolean not null,
    created_at timestamptz not null default now()
);
