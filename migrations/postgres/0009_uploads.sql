-- Files uploaded for prompts. The bytes live in the object store (key `<user_id>/<id>`); a row
-- exists only once they are stored whole. `tokens` is what the file costs in a model's context
-- (estimated from its type, size, image size or PDF pages).
CREATE TABLE uploads (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    mime_type  TEXT NOT NULL,
    size       BIGINT NOT NULL,
    tokens     INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX uploads_user ON uploads (user_id, id);

-- The files a prompt carries, in order. An upload may ride on several prompts (an edit keeps
-- its prompt's files); it goes when the last of them goes (or, never attached, after a day).
CREATE TABLE message_attachments (
    message_id UUID NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position   SMALLINT NOT NULL,
    upload_id  UUID NOT NULL REFERENCES uploads (id),
    PRIMARY KEY (message_id, position)
);
CREATE INDEX message_attachments_upload ON message_attachments (upload_id);

-- Like has_versions: a page of messages without files needs no lookup of them.
ALTER TABLE messages ADD COLUMN has_attachments BOOLEAN NOT NULL DEFAULT FALSE;
