-- A project's own settings (ledger/projects.py, ProjectSettingsChanged): each, when
-- set, replaces the server's for that project's requests. See docs/tenancy.md.

alter table projects
    add column scopes            text[],
    add column default_scope     text[],
    add column access_token_ttl  integer,
    add column refresh_token_ttl integer;
