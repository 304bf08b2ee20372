-- The rate limits and the throttles count every token request (two rows: the client's
-- and the address's), every sign-in and every registration. They are worthless after
-- a crash (a window restarts), so they need no WAL: as unlogged tables their autocommit
-- upserts commit without waiting for a WAL flush, holding a client's hot row only as
-- long as the statement, and a token request writes WAL for its events only. Crash
-- recovery empties them (docs/security.md, O5).

alter table rate_limits set unlogged;
alter table login_throttle set unlogged;
alter table registration_throttle set unlogged;

-- Each project's copies too (projections.tenancy creates them unlogged from now on).
do $$
declare
    t record;
begin
    for t in
        select schemaname, tablename from pg_tables
         where tablename in ('rate_limits', 'login_throttle', 'registration_throttle')
           and schemaname <> 'public'
    loop
        execute format('alter table %I.%I set unlogged', t.schemaname, t.tablename);
    end loop;
end
$$;
