-- Client settings an operator can change (ledger/clients.py: client_updated,
-- client_disabled/enabled, client_secret_rotated) and the family's last refresh, for
-- the per-client idle refresh lifetime (ledger/families.py).

alter table clients
    add column audiences                  text[] not null default '{}',
    add column refresh_idle_ttl           integer,
    add column disabled                   boolean not null default false,
    add column previous_secret_hash       text,
    add column previous_secret_expires_at timestamptz,
    add column updated_at                 timestamptz;

-- What the fold of client_registered gives: its one audience, if any.
update clients set audiences = array[audience] where audience is not null;

alter table token_families add column last_refreshed_at timestamptz;

-- The same value a rebuild computes: the time of the family's last refresh, if any.
update token_families f set last_refreshed_at = (
    select max(coalesce(e.data->>'rotated_at', e.data->>'refreshed_at', e.data->>'retried_at')::timestamptz)
    from events e
    where e.stream_id = 'family:' || f.family_id
      and e.type in ('refresh_token_rotated', 'access_token_refreshed', 'refresh_token_retried')
);
