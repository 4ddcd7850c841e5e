-- Conversations become trees: each message follows a parent (NULL for a room's first prompt);
-- editing a prompt or regenerating a reply adds a sibling instead of overwriting. `on_path`
-- marks the room's active path (what pages, search and the AI context read); `has_versions`
-- marks messages with siblings, so a page of never-branched messages needs no sibling lookup.
-- Replies can be cancelled, and keep Gemini's thinking and cached token counts.
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('pending', 'streaming', 'completed', 'failed', 'cancelled'));
-- No ON DELETE CASCADE on the parent: a room's messages go with the room (one cascade from
-- chatrooms), and a cascade along parent links would recurse once per level of a long chat.
ALTER TABLE messages ADD COLUMN parent_id UUID REFERENCES messages (id);
ALTER TABLE messages ADD COLUMN on_path BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE messages ADD COLUMN has_versions BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE messages ADD COLUMN thinking_tokens INTEGER;
ALTER TABLE messages ADD COLUMN cached_tokens INTEGER;
-- Until now a room was one line: each message follows the one before it.
UPDATE messages m SET parent_id = linear.previous
FROM (SELECT id, lag(id) OVER (PARTITION BY chatroom_id ORDER BY id) AS previous
      FROM messages) linear
WHERE linear.id = m.id AND linear.previous IS NOT NULL;
CREATE INDEX messages_parent ON messages (parent_id, id);
-- Pages read the active path, newest first.
DROP INDEX messages_chatroom;
CREATE INDEX messages_chatroom_path ON messages (chatroom_id, id DESC) WHERE on_path;
CREATE INDEX messages_chatroom ON messages (chatroom_id, id DESC);
