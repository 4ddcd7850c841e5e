-- Where a chatroom's name comes from: `user` (given or renamed by its owner), `default` (created
-- without one: "New chat" until its first reply completes) or `title` (generated from the first
-- exchange). A title never replaces a name the user set.
ALTER TABLE chatrooms ADD COLUMN name_source TEXT NOT NULL DEFAULT 'user';
