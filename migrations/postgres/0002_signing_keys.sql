-- Signing keys shared by every replica: the private part sealed (AES-256-GCM) with the
-- key-encryption key each replica is given, the public JWK in the clear (so that commands
-- that only verify, such as `jitgate audit verify`, need no key-encryption key).
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    alg             TEXT NOT NULL,
    created         BIGINT NOT NULL,
    sealed_private  BYTEA NOT NULL,
    public_jwk      TEXT NOT NULL
);
