-- Data planes seen by any control-plane node, for GET /clustering/data-planes.
CREATE TABLE clustering_data_planes (
    id               text PRIMARY KEY,          -- the data plane's node id
    hostname         text NOT NULL,
    ip               text NOT NULL,
    version          text NOT NULL,
    sync_status      text NOT NULL,
    config_hash      text NOT NULL DEFAULT '',
    acked_version    text NOT NULL DEFAULT '',  -- the config version the data plane runs
    last_nack        text,                      -- why it refused the newest config, if it did
    labels           jsonb NOT NULL DEFAULT '{}',
    cert_expiry      bigint,
    cp_node_id       text NOT NULL,
    connected        boolean NOT NULL DEFAULT true,
    last_seen        bigint NOT NULL,
    updated_at       bigint NOT NULL
);
CREATE INDEX clustering_data_planes_last_seen_idx ON clustering_data_planes (last_seen);
