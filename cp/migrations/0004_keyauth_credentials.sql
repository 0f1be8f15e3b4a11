-- key-auth credentials: API keys owned by consumers (Admin API /key-auths, /consumers/{c}/key-auth).
-- Deleting a consumer deletes its credentials: the store cascades (and logs each delete), so the
-- reference itself stays a plain one, like every other foreign key.
CREATE TABLE keyauth_credentials (
    id uuid PRIMARY KEY, tags text[], created_at bigint NOT NULL, entity jsonb NOT NULL,
    key text NOT NULL UNIQUE DEFERRABLE INITIALLY IMMEDIATE,
    consumer_id uuid NOT NULL REFERENCES consumers (id)
);
CREATE INDEX keyauth_credentials_consumer_id_idx ON keyauth_credentials (consumer_id);
CREATE INDEX keyauth_credentials_tags_idx ON keyauth_credentials USING gin (tags);
