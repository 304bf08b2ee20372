-- The event log: the only source of truth. Append-only, enforced here and not
-- only by the application (docs/architecture.md).

create table events (
    position    bigint generated always as identity primary key,
    stream_id   text        not null,
    version     integer     not null check (version > 0),
    type        text        not null,
    data        jsonb       not null,
    metadata    jsonb       not null default '{}'::jsonb,
    recorded_at timestamptz not null default clock_timestamp(),
    -- The writer's transaction id: catch-up readers only read below the oldest
    -- transaction still running, so a late commit with a lower position is never skipped.
    tx          xid8        not null default pg_current_xact_id(),
    prev_hash   bytea       not null,
    hash        bytea       not null,
    constraint events_stream_version_key unique (stream_id, version)
);

create index events_tx_position_idx on events (tx, position);
create index events_type_idx on events (type);

-- The per-stream SHA-256 chain. The database computes it, so no writer can forget
-- it or get it wrong: hash = sha256(prev_hash || canonical text of the row).
-- jsonb's text form is canonical (keys sorted, whitespace fixed), and the time is
-- hashed as integer microseconds so the session's time zone does not matter.
create function events_row_digest(
    p_prev_hash bytea, p_stream_id text, p_version integer, p_type text,
    p_data jsonb, p_metadata jsonb, p_recorded_at timestamptz
) returns bytea
language sql immutable parallel safe
as $$
    select sha256(p_prev_hash || convert_to(jsonb_build_array(
        p_stream_id, p_version, p_type, p_data, p_metadata,
        (extract(epoch from p_recorded_at) * 1000000)::bigint
    )::text, 'UTF8'))
$$;

create function events_chain() returns trigger
language plpgsql
as $$
begin
    if new.version = 1 then
        new.prev_hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    else
        select e.hash into new.prev_hash
          from events e
         where e.stream_id = new.stream_id and e.version = new.version - 1;
        if not found then
            raise exception 'stream % has no version % to follow', new.stream_id, new.version - 1
                using errcode = 'foreign_key_violation';
        end if;
    end if;
    new.hash := events_row_digest(new.prev_hash, new.stream_id, new.version, new.type,
                                  new.data, new.metadata, new.recorded_at);
    return new;
end
$$;

create trigger events_chain before insert on events
    for each row execute function events_chain();

create function events_refuse_change() returns trigger
language plpgsql
as $$
begin
    raise exception 'the event log is append-only: % on events is refused', tg_op
        using errcode = 'insufficient_privilege';
end
$$;

create trigger events_no_update_delete before update or delete on events
    for each row execute function events_refuse_change();
create trigger events_no_truncate before truncate on events
    for each statement execute function events_refuse_change();

-- ALWAYS: ordinary triggers are skipped under session_replication_role = replica.
alter table events enable always trigger events_chain;
alter table events enable always trigger events_no_update_delete;
alter table events enable always trigger events_no_truncate;
