-- Key rotation (ledger/keys.py, app/usecases/keys.py): when each key signs and how long
-- it stays published, kept beside the key as in its stream's events. A key made before
-- rotation signed from its creation on.

alter table signing_keys
    add column activates_at     timestamptz,
    add column stops_signing_at timestamptz,
    add column unpublish_at     timestamptz;

update signing_keys set activates_at = created_at;

alter table signing_keys alter column activates_at set not null;
