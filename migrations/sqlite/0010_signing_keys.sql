-- Signing keys kept in the database: the private part sealed (AES-256-GCM) with the
-- key-encryption key, the public JWK in the clear. Replicas on PostgreSQL keep their keys
-- here; a SQLite deployment keeps them in data_dir/keys, and this table stays empty.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    alg             TEXT NOT NULL,
    created         INTEGER NOT NULL,
    sealed_private  BLOB NOT NULL,
    public_jwk      TEXT NOT NULL
);
