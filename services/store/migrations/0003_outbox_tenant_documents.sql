-- 1. Documents belong to a tenant: content addressing (deduplication, object keys, page and character
--    counts) is never visible across tenants. Rows shared so far are copied for each tenant using them
--    (the copies keep the object they point at); new uploads get per-tenant keys.
ALTER TABLE extractions DROP CONSTRAINT extractions_document_sha256_fkey;
ALTER TABLE documents DROP CONSTRAINT documents_pkey;
ALTER TABLE documents ADD COLUMN tenant text;
INSERT INTO documents (tenant, sha256, size_bytes, object_key, page_count, char_count, create_time)
    SELECT DISTINCT e.tenant, d.sha256, d.size_bytes, d.object_key, d.page_count, d.char_count, d.create_time
    FROM documents d JOIN extractions e ON e.document_sha256 = d.sha256;
DELETE FROM documents WHERE tenant IS NULL;
ALTER TABLE documents ALTER COLUMN tenant SET NOT NULL;
ALTER TABLE documents ADD PRIMARY KEY (tenant, sha256);
ALTER TABLE extractions
    ADD CONSTRAINT extractions_document_fkey FOREIGN KEY (tenant, document_sha256) REFERENCES documents (tenant, sha256);

-- 2. Counts belong to the extraction that parsed the document, not to the bytes.
ALTER TABLE extractions ADD COLUMN page_count integer, ADD COLUMN char_count integer;
UPDATE extractions e SET page_count = d.page_count, char_count = d.char_count
    FROM documents d WHERE d.tenant = e.tenant AND d.sha256 = e.document_sha256;
ALTER TABLE documents DROP COLUMN page_count, DROP COLUMN char_count;

-- 3. The transactional outbox: a PENDING row whose workflow_start_time is NULL is the intent to start
--    its workflow, carried out by the store's relay; a cancel_time without cancel_delivered_time is a
--    cancel still to deliver. Rows that already exist and are past PENDING were started by the gateway.
ALTER TABLE extractions
    ADD COLUMN workflow_start_time timestamptz,
    ADD COLUMN cancel_time timestamptz,
    ADD COLUMN cancel_delivered_time timestamptz,
    -- What the request was (content hash, filename, options): a request_id reused for another request
    -- is refused instead of silently answered with the first extraction.
    ADD COLUMN fingerprint text,
    -- When the janitor last deleted the intermediate objects of a FAILED or CANCELLED extraction.
    ADD COLUMN swept_time timestamptz,
    -- The submit's W3C trace context, so the relay's workflow start continues the submit's trace.
    ADD COLUMN traceparent text;
UPDATE extractions SET workflow_start_time = create_time WHERE state <> 1;
CREATE INDEX extractions_outbox_start_idx ON extractions (create_time)
    WHERE state = 1 AND workflow_start_time IS NULL;
CREATE INDEX extractions_outbox_cancel_idx ON extractions (cancel_time)
    WHERE cancel_time IS NOT NULL AND cancel_delivered_time IS NULL;
CREATE INDEX extractions_unswept_idx ON extractions (update_time)
    WHERE state IN (4, 5) AND swept_time IS NULL;
