-- Conversations become trees: each message follows a parent (NULL for a room's first prompt);
-- editing a prompt or regenerating a reply adds a sibling instead of overwriting. `on_path`
-- marks the room's active path (what pages, search and the AI context read); `has_versions`
-- marks messages with siblings, so a page of never-branched messages needs no sibling lookup.
-- Replies can be cancelled, and keep Gemini's thinking and cached token counts.
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt, keeping each row's
-- rowid (the full-text index refers to rows by rowid) and then rebuilding that index.
CREATE TABLE messages_next (
    id              BLOB PRIMARY KEY,
    chatroom_id     BLOB NOT NULL REFERENCES chatrooms (id) ON DELETE CASCADE,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- No ON DELETE CASCADE: a room's messages go with the room; a cascade along parent links
    -- would recurse once per level (past SQLite's trigger depth in a long chat).
    parent_id       BLOB REFERENCES messages_next (id),
    role            TEXT NOT NULL CHECK (role IN ('user', 'model')),
    content         TEXT NOT NULL,
    status          TEXT NOT NULL
                    CHECK (status IN ('pending', 'streaming', 'completed', 'failed', 'cancelled')),
    on_path         INTEGER NOT NULL DEFAULT 1,
    has_versions    INTEGER NOT NULL DEFAULT 0,
    error_code      TEXT,
    error_message   TEXT,
    -- On a reply: the UTC day whose prompt it took; cleared when the prompt is given back.
    quota_day       TEXT,
    finish_reason   TEXT,
    model_version   TEXT,
    prompt_tokens   INTEGER,
    output_tokens   INTEGER,
    total_tokens    INTEGER,
    thinking_tokens INTEGER,
    cached_tokens   INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
-- Until now a room was one line: each message follows the one before it.
INSERT INTO messages_next (rowid, id, chatroom_id, user_id, parent_id, role, content, status,
                           error_code, error_message, quota_day, finish_reason, model_version,
                           prompt_tokens, output_tokens, total_tokens, created_at, updated_at)
SELECT rowid, id, chatroom_id, user_id,
       lag(id) OVER (PARTITION BY chatroom_id ORDER BY id), role, content, status,
       error_code, error_message, quota_day, finish_reason, model_version,
       prompt_tokens, output_tokens, total_tokens, created_at, updated_at
FROM messages
ORDER BY id;
DROP TABLE messages;
ALTER TABLE messages_next RENAME TO messages;
CREATE INDEX messages_parent ON messages (parent_id, id);
CREATE INDEX messages_chatroom ON messages (chatroom_id, id DESC);
-- Pages read the active path, newest first.
CREATE INDEX messages_chatroom_path ON messages (chatroom_id, id DESC) WHERE on_path;
CREATE INDEX messages_user ON messages (user_id);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.rowid, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.rowid, new.content);
END;
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
