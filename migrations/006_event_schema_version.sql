-- Each event row records the schema version of its data, so that an incompatible change
-- of an event is a new version plus an upcaster (ledger/events.py), and old rows are
-- read through it rather than rewritten. Existing rows are version 1.

alter table events add column schema_version integer not null default 1
    check (schema_version > 0);

-- The chain covers the version too: changing it would change how a row is read. A
-- version-1 row hashes exactly as before, so existing chains still verify.
create function events_row_digest(
    p_prev_hash bytea, p_stream_id text, p_version integer, p_type text,
    p_data jsonb, p_metadata jsonb, p_recorded_at timestamptz, p_schema_version integer
) returns bytea
language sql immutable parallel safe
as $$
    select case when p_schema_version = 1
        then events_row_digest(p_prev_hash, p_stream_id, p_version, p_type, p_data,
                               p_metadata, p_recorded_at)
        else sha256(p_prev_hash || convert_to(jsonb_build_array(
            p_stream_id, p_version, p_type, p_data, p_metadata,
            (extract(epoch from p_recorded_at) * 1000000)::bigint, p_schema_version
        )::text, 'UTF8'))
    end
$$;

create or replace function events_chain() returns trigger
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
                                  new.data, new.metadata, new.recorded_at, new.schema_version);
    return new;
end
$$;
