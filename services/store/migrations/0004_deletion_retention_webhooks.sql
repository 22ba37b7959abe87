-- 1. Deletion (DeleteExtraction, retention): a delete_requested_time hides the row from every public
--    read at once and is the outbox entry the relay turns into a DeletionWorkflow
--    (deletion_start_time records that it was started); the workflow then removes the row.
-- 2. Retention: the row is deleted once expire_time has passed (the retention schedule requests it).
-- 3. Completion webhooks: where to send the terminal event, and the last attempt's outcome.
ALTER TABLE extractions
    ADD COLUMN delete_requested_time timestamptz,
    ADD COLUMN deletion_start_time timestamptz,
    ADD COLUMN expire_time timestamptz,
    ADD COLUMN webhook_url text,
    ADD COLUMN webhook_state smallint NOT NULL DEFAULT 0,
    ADD COLUMN webhook_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN webhook_last_status_code integer NOT NULL DEFAULT 0,
    ADD COLUMN webhook_last_error text,
    ADD COLUMN webhook_last_attempt_time timestamptz;
CREATE INDEX extractions_outbox_delete_idx ON extractions (delete_requested_time)
    WHERE delete_requested_time IS NOT NULL AND deletion_start_time IS NULL;
CREATE INDEX extractions_expire_idx ON extractions (expire_time)
    WHERE expire_time IS NOT NULL AND delete_requested_time IS NULL;
