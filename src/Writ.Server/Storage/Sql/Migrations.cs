namespace Writ.Server.Storage.Sql;

/// <summary>
/// Schema migrations, numbered from 1, one list per dialect (same tables, dialect types). Append new versions at the
/// end; never edit a released one. Timestamps are integer microseconds since the Unix epoch (UTC).
/// </summary>
internal static class Migrations
{
    public static IReadOnlyList<string> Sqlite { get; } =
    [
        // 1: entries with revision + tombstones, nodes, join tokens, bundles, CA journals.
        """
        CREATE TABLE store_revision (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL) STRICT;
        INSERT INTO store_revision (id, revision) VALUES (1, 0);
        CREATE TABLE entries (
            id TEXT PRIMARY KEY,
            spiffe_id TEXT NOT NULL,
            parent_id TEXT NOT NULL,
            selectors TEXT NOT NULL,
            identity_key TEXT NOT NULL UNIQUE,
            x509_ttl_seconds INTEGER NOT NULL,
            jwt_ttl_seconds INTEGER NOT NULL,
            dns_names TEXT NOT NULL,
            hint TEXT NOT NULL,
            admin INTEGER NOT NULL,
            expires_at_us INTEGER,
            revision INTEGER NOT NULL,
            created_at_us INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX entries_parent_revision ON entries (parent_id, revision);
        CREATE INDEX entries_spiffe_id ON entries (spiffe_id);
        CREATE TABLE entry_selectors (
            entry_id TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
            type TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (entry_id, type, value)
        ) STRICT;
        CREATE INDEX entry_selectors_type_value ON entry_selectors (type, value);
        CREATE TABLE entry_tombstones (
            revision INTEGER NOT NULL,
            entry_id TEXT NOT NULL,
            parent_id TEXT NOT NULL
        ) STRICT;
        CREATE INDEX entry_tombstones_parent_revision ON entry_tombstones (parent_id, revision);
        CREATE TABLE nodes (
            spiffe_id TEXT PRIMARY KEY,
            attestation_type TEXT NOT NULL,
            serial_number TEXT NOT NULL,
            expires_at_us INTEGER NOT NULL,
            banned INTEGER NOT NULL,
            selectors TEXT NOT NULL,
            aliases TEXT NOT NULL,
            created_at_us INTEGER NOT NULL,
            updated_at_us INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE join_tokens (
            id TEXT PRIMARY KEY,
            secret_hash BLOB NOT NULL UNIQUE,
            expires_at_us INTEGER NOT NULL,
            alias TEXT,
            created_at_us INTEGER NOT NULL,
            used_at_us INTEGER
        ) STRICT;
        CREATE TABLE bundles (
            trust_domain TEXT PRIMARY KEY,
            bundle_json TEXT NOT NULL,
            sequence INTEGER NOT NULL,
            updated_at_us INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE ca_journals (
            name TEXT PRIMARY KEY,
            data BLOB NOT NULL,
            updated_at_us INTEGER NOT NULL
        ) STRICT;
        """,
        // 2: tombstone pruning. Deletions older than the horizon are gone, so a sync from before it must be a full one.
        """
        ALTER TABLE store_revision ADD COLUMN tombstones_pruned_through INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE entry_tombstones ADD COLUMN deleted_at_us INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX entry_tombstones_revision ON entry_tombstones (revision);
        """,
        // 3: the hash-chained ledger and its head, issued credentials, policy versions, revocations (issues #5, #6).
        """
        CREATE TABLE ledger (
            seq INTEGER PRIMARY KEY,
            at_us INTEGER NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL,
            subject TEXT NOT NULL,
            decision_id TEXT,
            data TEXT NOT NULL,
            prev_hash BLOB NOT NULL,
            hash BLOB NOT NULL
        ) STRICT;
        CREATE UNIQUE INDEX ledger_decision ON ledger (decision_id) WHERE decision_id IS NOT NULL;
        CREATE INDEX ledger_kind ON ledger (kind, seq);
        CREATE INDEX ledger_subject ON ledger (subject, seq);
        CREATE TABLE ledger_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash BLOB NOT NULL) STRICT;
        INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, zeroblob(32));
        CREATE TABLE issued_credentials (
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            spiffe_id TEXT NOT NULL,
            entry_id TEXT,
            agent_id TEXT NOT NULL,
            instance_id TEXT,
            decision_id TEXT NOT NULL,
            issued_at_us INTEGER NOT NULL,
            expires_at_us INTEGER NOT NULL,
            PRIMARY KEY (kind, id)
        ) STRICT;
        CREATE INDEX issued_entry ON issued_credentials (entry_id);
        CREATE INDEX issued_spiffe ON issued_credentials (spiffe_id);
        CREATE INDEX issued_agent ON issued_credentials (agent_id);
        CREATE INDEX issued_instance ON issued_credentials (instance_id);
        CREATE INDEX issued_expires ON issued_credentials (expires_at_us);
        CREATE TABLE policy_versions (
            version INTEGER PRIMARY KEY,
            files TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            author TEXT NOT NULL,
            comment TEXT NOT NULL,
            created_at_us INTEGER NOT NULL,
            rolled_back_from INTEGER
        ) STRICT;
        CREATE TABLE revocations (
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            spiffe_id TEXT NOT NULL,
            entry_id TEXT,
            instance_id TEXT,
            revoked_at_us INTEGER NOT NULL,
            expires_at_us INTEGER NOT NULL,
            reason TEXT NOT NULL,
            revision INTEGER NOT NULL,
            PRIMARY KEY (kind, id)
        ) STRICT;
        CREATE INDEX revocations_revision ON revocations (revision);
        CREATE INDEX revocations_expires ON revocations (expires_at_us);
        """,
        // 4: facts recorded at the first start and checked at every later one (the trust domain the data belongs to).
        """
        CREATE TABLE store_metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
        """,
        // 5: TPM reference sets (issue #14): named PCR values a node's quote is matched against.
        """
        CREATE TABLE tpm_reference_sets (name TEXT PRIMARY KEY, pcrs TEXT NOT NULL, created_at_us INTEGER NOT NULL) STRICT;
        """,
        // 6: node posture under continuous attestation (issue #14): active or drifted, why, and the attestor's recheck state.
        """
        ALTER TABLE nodes ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
        ALTER TABLE nodes ADD COLUMN status_reason TEXT;
        ALTER TABLE nodes ADD COLUMN attestor_state BLOB;
        """,
        // 7: CI sessions (issue #15): one row per 'writ ci login'; the job token's replay key is unique (accepted once).
        """
        CREATE TABLE ci_sessions (
            id TEXT PRIMARY KEY,
            token_key TEXT NOT NULL UNIQUE,
            issuer TEXT NOT NULL,
            subject TEXT NOT NULL,
            spiffe_id TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            selectors TEXT NOT NULL,
            facts TEXT NOT NULL,
            serial TEXT,
            jtis TEXT NOT NULL,
            created_at_us INTEGER NOT NULL,
            expires_at_us INTEGER NOT NULL,
            ended_at_us INTEGER,
            end_reason TEXT
        ) STRICT;
        CREATE INDEX ci_sessions_serial ON ci_sessions (serial);
        CREATE INDEX ci_sessions_expires ON ci_sessions (expires_at_us);
        """,
        // 8: federation (issue #16): relationships with foreign trust domains (their bundles live in bundles, keyed by
        // trust domain) and the trust domains each entry federates with.
        """
        CREATE TABLE federation_relationships (
            trust_domain TEXT PRIMARY KEY,
            bundle_endpoint_url TEXT NOT NULL,
            profile TEXT NOT NULL,
            endpoint_spiffe_id TEXT NOT NULL,
            created_at_us INTEGER NOT NULL,
            last_refresh_us INTEGER,
            next_refresh_us INTEGER NOT NULL,
            last_error TEXT
        ) STRICT;
        ALTER TABLE entries ADD COLUMN federates_with TEXT NOT NULL DEFAULT '[]';
        """,
        // 9: the servers sharing the store (issue #16): one row per server id, a heartbeat in last_seen.
        """
        CREATE TABLE servers (
            server_id TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            started_at_us INTEGER NOT NULL,
            last_seen_us INTEGER NOT NULL
        ) STRICT;
        """,
        // 10: the shared sync feed reads every entry changed after a revision, whatever the parent (issue #16 fan-out;
        // tombstones have entry_tombstones_revision since 2).
        """
        CREATE INDEX entries_revision ON entries (revision);
        """,
        // 11: every server's CRLs (issue #16): a relying party checks an SVID against a CRL from the SVID's own issuer, so each
        // server publishes the CRLs its authorities sign and every server hands all of them to its agents. And each server's
        // boot nonce, to find two live processes with one server id (a copied data dir).
        """
        CREATE TABLE server_crls (
            server_id TEXT NOT NULL,
            authority_key_id TEXT NOT NULL,
            crl_der BLOB NOT NULL,
            next_update_us INTEGER NOT NULL,
            PRIMARY KEY (server_id, authority_key_id)
        ) STRICT;
        ALTER TABLE servers ADD COLUMN boot_nonce TEXT NOT NULL DEFAULT '';
        """,
        // 12: the outage pool (issue #16 item 5): how many pre-signed X.509-SVIDs an entry's agent may hold, and which
        // pooled SVIDs each agent holds (bounded per agent and entry; reported when handed out).
        """
        ALTER TABLE entries ADD COLUMN outage_pool INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE pooled_svids (
            serial TEXT PRIMARY KEY,
            entry_id TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            issued_at_us INTEGER NOT NULL,
            expires_at_us INTEGER NOT NULL,
            used_at_us INTEGER,
            used_instance TEXT
        ) STRICT;
        CREATE INDEX pooled_svids_agent_entry ON pooled_svids (agent_id, entry_id);
        """,
    ];

    public static IReadOnlyList<string> Postgres { get; } =
    [
        """
        CREATE TABLE store_revision (id integer PRIMARY KEY CHECK (id = 1), revision bigint NOT NULL);
        INSERT INTO store_revision (id, revision) VALUES (1, 0);
        CREATE TABLE entries (
            id text COLLATE "C" PRIMARY KEY,
            spiffe_id text COLLATE "C" NOT NULL,
            parent_id text COLLATE "C" NOT NULL,
            selectors text NOT NULL,
            identity_key text COLLATE "C" NOT NULL UNIQUE,
            x509_ttl_seconds integer NOT NULL,
            jwt_ttl_seconds integer NOT NULL,
            dns_names text NOT NULL,
            hint text NOT NULL,
            admin boolean NOT NULL,
            expires_at_us bigint,
            revision bigint NOT NULL,
            created_at_us bigint NOT NULL
        );
        CREATE INDEX entries_parent_revision ON entries (parent_id, revision);
        CREATE INDEX entries_spiffe_id ON entries (spiffe_id);
        CREATE TABLE entry_selectors (
            entry_id text COLLATE "C" NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
            type text COLLATE "C" NOT NULL,
            value text COLLATE "C" NOT NULL,
            PRIMARY KEY (entry_id, type, value)
        );
        CREATE INDEX entry_selectors_type_value ON entry_selectors (type, value);
        CREATE TABLE entry_tombstones (
            revision bigint NOT NULL,
            entry_id text COLLATE "C" NOT NULL,
            parent_id text COLLATE "C" NOT NULL
        );
        CREATE INDEX entry_tombstones_parent_revision ON entry_tombstones (parent_id, revision);
        CREATE TABLE nodes (
            spiffe_id text COLLATE "C" PRIMARY KEY,
            attestation_type text NOT NULL,
            serial_number text NOT NULL,
            expires_at_us bigint NOT NULL,
            banned boolean NOT NULL,
            selectors text NOT NULL,
            aliases text NOT NULL,
            created_at_us bigint NOT NULL,
            updated_at_us bigint NOT NULL
        );
        CREATE TABLE join_tokens (
            id text COLLATE "C" PRIMARY KEY,
            secret_hash bytea NOT NULL UNIQUE,
            expires_at_us bigint NOT NULL,
            alias text,
            created_at_us bigint NOT NULL,
            used_at_us bigint
        );
        CREATE TABLE bundles (
            trust_domain text COLLATE "C" PRIMARY KEY,
            bundle_json text NOT NULL,
            sequence bigint NOT NULL,
            updated_at_us bigint NOT NULL
        );
        CREATE TABLE ca_journals (
            name text COLLATE "C" PRIMARY KEY,
            data bytea NOT NULL,
            updated_at_us bigint NOT NULL
        );
        """,
        """
        ALTER TABLE store_revision ADD COLUMN tombstones_pruned_through bigint NOT NULL DEFAULT 0;
        ALTER TABLE entry_tombstones ADD COLUMN deleted_at_us bigint NOT NULL DEFAULT 0;
        CREATE INDEX entry_tombstones_revision ON entry_tombstones (revision);
        """,
        // 3: the hash-chained ledger and its head, issued credentials, policy versions, revocations (issues #5, #6).
        """
        CREATE TABLE ledger (
            seq bigint PRIMARY KEY,
            at_us bigint NOT NULL,
            kind text NOT NULL,
            actor text NOT NULL,
            subject text NOT NULL,
            decision_id text,
            data text NOT NULL,
            prev_hash bytea NOT NULL,
            hash bytea NOT NULL
        );
        CREATE UNIQUE INDEX ledger_decision ON ledger (decision_id) WHERE decision_id IS NOT NULL;
        CREATE INDEX ledger_kind ON ledger (kind, seq);
        CREATE INDEX ledger_subject ON ledger (subject, seq);
        CREATE TABLE ledger_head (id integer PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL, hash bytea NOT NULL);
        INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
        CREATE TABLE issued_credentials (
            kind text NOT NULL,
            id text NOT NULL,
            spiffe_id text NOT NULL,
            entry_id text,
            agent_id text NOT NULL,
            instance_id text,
            decision_id text NOT NULL,
            issued_at_us bigint NOT NULL,
            expires_at_us bigint NOT NULL,
            PRIMARY KEY (kind, id)
        );
        CREATE INDEX issued_entry ON issued_credentials (entry_id);
        CREATE INDEX issued_spiffe ON issued_credentials (spiffe_id);
        CREATE INDEX issued_agent ON issued_credentials (agent_id);
        CREATE INDEX issued_instance ON issued_credentials (instance_id);
        CREATE INDEX issued_expires ON issued_credentials (expires_at_us);
        CREATE TABLE policy_versions (
            version bigint PRIMARY KEY,
            files text NOT NULL,
            sha256 text NOT NULL,
            author text NOT NULL,
            comment text NOT NULL,
            created_at_us bigint NOT NULL,
            rolled_back_from bigint
        );
        CREATE TABLE revocations (
            kind text NOT NULL,
            id text NOT NULL,
            spiffe_id text NOT NULL,
            entry_id text,
            instance_id text,
            revoked_at_us bigint NOT NULL,
            expires_at_us bigint NOT NULL,
            reason text NOT NULL,
            revision bigint NOT NULL,
            PRIMARY KEY (kind, id)
        );
        CREATE INDEX revocations_revision ON revocations (revision);
        CREATE INDEX revocations_expires ON revocations (expires_at_us);
        """,
        // 4: facts recorded at the first start and checked at every later one (the trust domain the data belongs to).
        """
        CREATE TABLE store_metadata (key text PRIMARY KEY, value text NOT NULL);
        """,
        // 5: TPM reference sets (issue #14).
        """
        CREATE TABLE tpm_reference_sets (name text COLLATE "C" PRIMARY KEY, pcrs text NOT NULL, created_at_us bigint NOT NULL);
        """,
        // 6: node posture under continuous attestation (issue #14).
        """
        ALTER TABLE nodes ADD COLUMN status text NOT NULL DEFAULT 'active';
        ALTER TABLE nodes ADD COLUMN status_reason text;
        ALTER TABLE nodes ADD COLUMN attestor_state bytea;
        """,
        // 7: CI sessions (issue #15).
        """
        CREATE TABLE ci_sessions (
            id text COLLATE "C" PRIMARY KEY,
            token_key text COLLATE "C" NOT NULL UNIQUE,
            issuer text NOT NULL,
            subject text NOT NULL,
            spiffe_id text NOT NULL,
            entry_id text NOT NULL,
            selectors text NOT NULL,
            facts text NOT NULL,
            serial text COLLATE "C",
            jtis text NOT NULL,
            created_at_us bigint NOT NULL,
            expires_at_us bigint NOT NULL,
            ended_at_us bigint,
            end_reason text
        );
        CREATE INDEX ci_sessions_serial ON ci_sessions (serial);
        CREATE INDEX ci_sessions_expires ON ci_sessions (expires_at_us);
        """,
        // 8: federation (issue #16).
        """
        CREATE TABLE federation_relationships (
            trust_domain text COLLATE "C" PRIMARY KEY,
            bundle_endpoint_url text NOT NULL,
            profile text NOT NULL,
            endpoint_spiffe_id text NOT NULL,
            created_at_us bigint NOT NULL,
            last_refresh_us bigint,
            next_refresh_us bigint NOT NULL,
            last_error text
        );
        ALTER TABLE entries ADD COLUMN federates_with text NOT NULL DEFAULT '[]';
        """,
        // 9: the servers sharing the store (issue #16): one row per server id, a heartbeat in last_seen.
        """
        CREATE TABLE servers (
            server_id text COLLATE "C" PRIMARY KEY,
            address text NOT NULL,
            started_at_us bigint NOT NULL,
            last_seen_us bigint NOT NULL
        );
        """,
        // 10: the shared sync feed reads every entry changed after a revision, whatever the parent (issue #16 fan-out;
        // tombstones have entry_tombstones_revision since 2).
        """
        CREATE INDEX entries_revision ON entries (revision);
        """,
        // 11: every server's CRLs (issue #16): a relying party checks an SVID against a CRL from the SVID's own issuer, so each
        // server publishes the CRLs its authorities sign and every server hands all of them to its agents. And each server's
        // boot nonce, to find two live processes with one server id (a copied data dir).
        """
        CREATE TABLE server_crls (
            server_id text COLLATE "C" NOT NULL,
            authority_key_id text COLLATE "C" NOT NULL,
            crl_der bytea NOT NULL,
            next_update_us bigint NOT NULL,
            PRIMARY KEY (server_id, authority_key_id)
        );
        ALTER TABLE servers ADD COLUMN boot_nonce text NOT NULL DEFAULT '';
        """,
        // 12: the outage pool (issue #16 item 5).
        """
        ALTER TABLE entries ADD COLUMN outage_pool integer NOT NULL DEFAULT 0;
        CREATE TABLE pooled_svids (
            serial text COLLATE "C" PRIMARY KEY,
            entry_id text COLLATE "C" NOT NULL,
            agent_id text COLLATE "C" NOT NULL,
            issued_at_us bigint NOT NULL,
            expires_at_us bigint NOT NULL,
            used_at_us bigint,
            used_instance text
        );
        CREATE INDEX pooled_svids_agent_entry ON pooled_svids (agent_id, entry_id);
        """,
    ];
}
