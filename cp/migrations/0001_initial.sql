-- tidegate schema, version 1.
-- One table per entity: the entity itself as JSON, plus the columns PostgreSQL must enforce
-- (unique keys, foreign keys, the plugin/target cache keys) and those lists filter on (tags).
-- Unique keys are deferrable so a declarative import may swap values between rows; they are
-- checked per statement everywhere else.

CREATE TABLE cluster_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
-- The epoch prefixes config versions so a data plane notices it talks to a different database.
INSERT INTO cluster_meta (key, value) VALUES ('epoch', gen_random_uuid()::text);

-- Every committed write, in commit order: ids are taken under an advisory lock held to commit.
CREATE TABLE change_log (
    id          bigint PRIMARY KEY,
    tx          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    op          text NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    entity_type text NOT NULL,
    entity_id   uuid NOT NULL,
    old_entity  jsonb,
    new_entity  jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE change_log_id_seq;

CREATE TABLE certificates (
    id uuid PRIMARY KEY, tags text[], created_at bigint NOT NULL, entity jsonb NOT NULL
);
CREATE TABLE snis (
    id uuid PRIMARY KEY, tags text[], created_at bigint NOT NULL, entity jsonb NOT NULL,
    name text NOT NULL UNIQUE DEFERRABLE INITIALLY IMMEDIATE,
    certificate_id uuid NOT NULL REFERENCES certificates (id)
);
CREATE TABLE services (
    id uuid PRIMARY KEY, tags text[], created_at bigint NOT NULL, entity jsonb NOT NULL,
    name text UNIQUE DEFERRABLE INITIALLY IMMEDIATE,
    client_certificate_id uuid REFERENCES certificates (id)
);
CREATE TABLE routes (
    id uuid PRIMARY KEY, tags text[], created_at bigint NOT NULL, entity jsonb NOT NULL,
    name text UNIQUE DEFERRABLE INITIALLY IMMEDIATE,
    service_id uuid REFERENCES services (id)
);
CREATE TABLE consumers (
    id uuid PRIMARY KEY, tags text[], created_at bigint NOT NULL, entity jsonb NOT NULL,
    username text UNIQUE DEFERRABLE INITIALLY IMMEDIATE,
    custom_id text UNIQUE DEFERRABLE INITIALLY IMMEDIATE
);
CREATE TABLE upstreams (
    id uuid PRIMARY KEY, tags text[], created_at bigint NOT NULL, entity jsonb NOT NULL,
    name text NOT NULL UNIQUE DEFERRABLE INITIALLY IMMEDIATE,
    client_certificate_id uuid REFERENCES certificates (id)
);
CREATE TABLE targets (
    id uuid PRIMARY KEY, tags text[], created_at bigint NOT NULL, entity jsonb NOT NULL,
    upstream_id uuid NOT NULL REFERENCES upstreams (id),
    cache_key text NOT NULL UNIQUE DEFERRABLE INITIALLY IMMEDIATE
);
CREATE TABLE plugins (
    id uuid PRIMARY KEY, tags text[], created_at bigint NOT NULL, entity jsonb NOT NULL,
    instance_name text UNIQUE DEFERRABLE INITIALLY IMMEDIATE,
    route_id uuid REFERENCES routes (id),
    service_id uuid REFERENCES services (id),
    consumer_id uuid REFERENCES consumers (id),
    cache_key text NOT NULL UNIQUE DEFERRABLE INITIALLY IMMEDIATE
);
CREATE TABLE event_hooks (
    id uuid PRIMARY KEY, tags text[], created_at bigint NOT NULL, entity jsonb NOT NULL
);
CREATE TABLE admins (
    id uuid PRIMARY KEY, tags text[], created_at bigint NOT NULL, entity jsonb NOT NULL,
    username text NOT NULL UNIQUE DEFERRABLE INITIALLY IMMEDIATE,
    email text UNIQUE DEFERRABLE INITIALLY IMMEDIATE,
    custom_id text UNIQUE DEFERRABLE INITIALLY IMMEDIATE,
    token_digest text UNIQUE DEFERRABLE INITIALLY IMMEDIATE
);

CREATE INDEX snis_certificate_id_idx ON snis (certificate_id);
CREATE INDEX routes_service_id_idx ON routes (service_id);
CREATE INDEX targets_upstream_id_idx ON targets (upstream_id);
CREATE INDEX plugins_route_id_idx ON plugins (route_id);
CREATE INDEX plugins_service_id_idx ON plugins (service_id);
CREATE INDEX plugins_consumer_id_idx ON plugins (consumer_id);
CREATE INDEX certificates_tags_idx ON certificates USING gin (tags);
CREATE INDEX snis_tags_idx ON snis USING gin (tags);
CREATE INDEX services_tags_idx ON services USING gin (tags);
CREATE INDEX routes_tags_idx ON routes USING gin (tags);
CREATE INDEX consumers_tags_idx ON consumers USING gin (tags);
CREATE INDEX upstreams_tags_idx ON upstreams USING gin (tags);
CREATE INDEX targets_tags_idx ON targets USING gin (tags);
CREATE INDEX plugins_tags_idx ON plugins USING gin (tags);
CREATE INDEX admins_tags_idx ON admins USING gin (tags);
