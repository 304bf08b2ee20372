-- Dynamic client registrations (RFC 7591) per client address, in fixed windows. Like
-- login_throttle: operational state shared by every replica, not events.

create table registration_throttle (
    key           text primary key,   -- 'ip:<address>'
    window_start  timestamptz not null,
    registrations integer not null
);
