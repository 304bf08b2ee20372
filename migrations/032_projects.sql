-- Projects (ledger/projects.py): the read model of the 'project:<id>' streams. See
-- docs/tenancy.md: today they are recorded and the Stack Auth route refuses a disabled
-- one; scoping every stream and read model by project comes later.

create table projects (
    project_id  text primary key,
    name        text not null,
    added_at    timestamptz not null,
    disabled_at timestamptz,
    version     integer not null
);
