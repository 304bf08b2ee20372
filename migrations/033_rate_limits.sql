-- Request rate limits (token requests per client and per address), in fixed windows.
-- Like login_throttle and registration_throttle: operational state shared by every
-- replica, not events. One row per key; a row past its window is reset in place.

create table rate_limits (
    key           text primary key,   -- 'token-client:<client_id>', 'token-ip:<address>'
    window_start  timestamptz not null,
    hits          integer not null
);
