-- An auditor may be limited to one project's streams (ledger/auditors.py; the
-- auditor_added event's project). Null: every project's, as before.

alter table auditors add column project text;
