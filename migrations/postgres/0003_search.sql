-- Full-text search over messages. The 'simple' configuration tokenises any language without
-- English-only stemming; a generated column keeps the vector in step with every write.
ALTER TABLE messages
    ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;
CREATE INDEX messages_search ON messages USING GIN (search);
CREATE INDEX messages_user ON messages (user_id);
