-- ZLMediaKit stops carry no connection id: remember which schema the publish came with and
-- the origin's hook counter at publish time, so that a late `regist:false` of an earlier
-- session (or of another schema) cannot close a newer session.
ALTER TABLE streams ADD COLUMN origin_schema TEXT NULL;
ALTER TABLE streams ADD COLUMN origin_hook_index INTEGER NULL;
