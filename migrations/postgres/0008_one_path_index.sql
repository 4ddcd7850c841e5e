-- One index serves both what a room's rows are looked up by (the cascade of a room's deletion)
-- and its active path (pages, the end of the path a new prompt follows): the path rows are the
-- `on_path = TRUE` range of the room. It replaces two indexes that every insert wrote.
DROP INDEX messages_chatroom_path;
DROP INDEX messages_chatroom;
CREATE INDEX messages_chatroom_path ON messages (chatroom_id, on_path, id);
