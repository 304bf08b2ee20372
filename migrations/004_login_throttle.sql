-- Failed sign-ins per account and per client address, in fixed windows (A11). Shared by
-- every replica; not events: it is operational state, and expires by itself.

create table login_throttle (
    key          text primary key,   -- 'account:<username>' or 'ip:<address>'
    window_start timestamptz not null,
    failures     integer not null
);
