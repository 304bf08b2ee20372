-- The row digest (001, 006) was declared IMMUTABLE over convert_to() and
-- jsonb_build_array(), which PostgreSQL marks STABLE. A SQL function is inlined into the
-- statement that calls it only when its body is no more volatile than it says, so every
-- digest ran as a function call of its own, twice nested: 74 microseconds an event,
-- against 11 once inlined. Every append (the chain trigger), every seal and every
-- verification pays it. Same bodies, declared STABLE; the digests are unchanged (its
-- arguments hold no timestamps, so neither the time zone nor the date style enter).

create or replace function events_row_digest(
    p_prev_hash bytea, p_stream_id text, p_version integer, p_type text,
    p_data jsonb, p_metadata jsonb, p_recorded_at timestamptz
) returns bytea
language sql stable parallel safe
as $$
    select sha256(p_prev_hash || convert_to(jsonb_build_array(
        p_stream_id, p_version, p_type, p_data, p_metadata,
        (extract(epoch from p_recorded_at) * 1000000)::bigint
    )::text, 'UTF8'))
$$;

create or replace function events_row_digest(
    p_prev_hash bytea, p_stream_id text, p_version integer, p_type text,
    p_data jsonb, p_metadata jsonb, p_recorded_at timestamptz, p_schema_version integer
) returns bytea
language sql stable parallel safe
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
