-- A purge that deletes a tenant's PDF leaves a short-lived note of it, so an upload of the same bytes
-- racing the purge can tell that its freshly written object may have been deleted under it (and write it
-- again) without asking S3 on every new document. The janitor removes notes older than the upload
-- grace period; a note names no extraction, only the tenant and the content hash.
CREATE TABLE purged_documents (
    tenant text NOT NULL,
    sha256 text NOT NULL,
    purge_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, sha256)
);
CREATE INDEX purged_documents_time_idx ON purged_documents (purge_time);
