-- Clients resolved from a Client ID Metadata Document (ledger/metadata_documents.py)
-- carry source 'metadata_document'; registered clients have none.

alter table clients add column source text;
