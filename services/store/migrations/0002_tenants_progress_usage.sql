-- Tenants: every extraction belongs to one; request ids are unique per tenant.
ALTER TABLE extractions ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE extractions DROP CONSTRAINT extractions_request_id_key;
CREATE UNIQUE INDEX extractions_tenant_request_id_key ON extractions (tenant, request_id);
DROP INDEX extractions_create_time_idx;
CREATE INDEX extractions_tenant_list_idx ON extractions (tenant, create_time DESC, id DESC);
CREATE INDEX extractions_tenant_sha256_idx ON extractions (tenant, document_sha256, state);

-- Progress for watchers, token usage of LLM backends.
ALTER TABLE extractions
    ADD COLUMN pages_parsed integer NOT NULL DEFAULT 0,
    ADD COLUMN pages_total integer NOT NULL DEFAULT 0,
    ADD COLUMN chunks_done integer NOT NULL DEFAULT 0,
    ADD COLUMN chunks_total integer NOT NULL DEFAULT 0,
    ADD COLUMN prompt_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN completion_tokens bigint NOT NULL DEFAULT 0;

-- Every change is announced, so watchers on any store replica wake up at once instead of polling.
CREATE FUNCTION notify_extraction_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('extraction_changed', NEW.id::text);
    RETURN NEW;
END;
$$;

CREATE TRIGGER extraction_changed AFTER UPDATE ON extractions
    FOR EACH ROW EXECUTE FUNCTION notify_extraction_changed();
