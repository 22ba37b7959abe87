-- Documents are content-addressed: the same PDF bytes are stored once.
CREATE TABLE documents (
    sha256      text PRIMARY KEY,
    size_bytes  bigint NOT NULL CHECK (size_bytes > 0),
    object_key  text NOT NULL,
    page_count  integer,
    char_count  integer,
    create_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE extractions (
    id              uuid PRIMARY KEY,
    request_id      text UNIQUE,
    document_sha256 text NOT NULL REFERENCES documents (sha256),
    filename        text NOT NULL,
    state           smallint NOT NULL,
    stage           smallint NOT NULL,
    error_code      text,
    error_message   text,
    model           text,
    result_key      text,
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX extractions_create_time_idx ON extractions (create_time DESC);

CREATE TABLE clauses (
    extraction_id uuid NOT NULL REFERENCES extractions (id) ON DELETE CASCADE,
    ordinal       integer NOT NULL,
    category      text NOT NULL,
    text          text NOT NULL,
    page_start    integer NOT NULL,
    page_end      integer NOT NULL,
    char_start    integer NOT NULL,
    char_end      integer NOT NULL,
    confidence    real NOT NULL,
    answer        text NOT NULL DEFAULT '',
    PRIMARY KEY (extraction_id, ordinal),
    CHECK (char_end >= char_start)
);
