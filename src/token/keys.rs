//! Signing keys in `data_dir/keys/`: generated on first start, private files mode 0600, rotated
//! by adding a newer key. The newest key signs; older public keys stay in the JWKS until every
//! token they can have signed has expired (their retirement plus `max_ttl`), then are dropped.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};

use crate::config::SigningAlg;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "{path} is writable by group or others (mode {mode:o}): they could plant a key; run `chmod go-w {path}`"
    )]
    WritableDir { path: PathBuf, mode: u32 },
    #[error("cannot generate a {alg} key: {message}")]
    Generate { alg: &'static str, message: String },
}

fn file_error(path: &Path, message: impl ToString) -> KeyError {
    KeyError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// One signing key.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// Unix seconds the key was created (and its predecessor retired).
    pub created: u64,
    /// Its file; `None` for a key kept in a shared database.
    pub path: Option<PathBuf>,
    pub(crate) encoding: EncodingKey,
    pub(crate) signer: Signer,
    pub public: Jwk,
}

/// A private key parsed once, for signing access tokens. jsonwebtoken's `encode` parses its
/// key again on every call (for ES256 that costs about as much as the signature itself), so
/// access tokens are signed with AWS-LC directly — the library jsonwebtoken's `aws_lc_rs`
/// backend signs with — and verified, everywhere, by jsonwebtoken.
pub(crate) enum Signer {
    Es256(aws_lc_rs::signature::EcdsaKeyPair),
    EdDsa(aws_lc_rs::signature::Ed25519KeyPair),
    Rs256(aws_lc_rs::signature::RsaKeyPair),
}

impl Signer {
    /// `der`: PKCS#8 for ES256 and EdDSA, PKCS#1 for RS256, as jsonwebtoken reads them from
    /// PEM.
    fn parse(alg: SigningAlg, der: &[u8]) -> Result<Self, String> {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair,
        };
        match alg {
            SigningAlg::Es256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map(Self::Es256)
                .map_err(|e| e.to_string()),
            SigningAlg::EdDsa => Ed25519KeyPair::from_pkcs8(der)
                .map(Self::EdDsa)
                .map_err(|e| e.to_string()),
            SigningAlg::Rs256 => RsaKeyPair::from_der(der)
                .map(Self::Rs256)
                .map_err(|e| e.to_string()),
        }
    }

    /// The JWS signature of `message` (ES256: the fixed-width r‖s form JWS uses).
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let random = aws_lc_rs::rand::SystemRandom::new();
        match self {
            Self::Es256(key) => Ok(key.sign(&random, message)?.as_ref().to_vec()),
            Self::EdDsa(key) => Ok(key.sign(message).as_ref().to_vec()),
            Self::Rs256(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &random,
                    message,
                    &mut signature,
                )?;
                Ok(signature)
            }
        }
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

pub(crate) fn algorithm(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::Es256 => Algorithm::ES256,
        SigningAlg::EdDsa => Algorithm::EdDSA,
        SigningAlg::Rs256 => Algorithm::RS256,
    }
}

/// The keys of a data dir, oldest first.
#[derive(Debug)]
pub struct KeyRing {
    dir: PathBuf,
    keys: Vec<SigningKey>,
}

impl KeyRing {
    /// Opens `dir`, creating it (mode 0700) and a first key of `alg` when there is none, or a new
    /// one when the newest key is of another algorithm. Refuses group- or world-readable keys,
    /// and a dir that group or others can write (they could plant a key that signs).
    pub fn open(dir: &Path, alg: SigningAlg, now: u64) -> Result<Self, KeyError> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| file_error(dir, e))?;
        }
        let mut ring = Self::read(dir)?;
        if ring.active().is_none_or(|key| key.alg != alg) {
            ring.generate(alg, now)?;
        }
        Ok(ring)
    }

    /// The keys in `dir` as they are, for commands that only look: nothing is created or
    /// generated (an absent dir holds no keys). Refuses what [`KeyRing::open`] refuses.
    pub fn read(dir: &Path) -> Result<Self, KeyError> {
        let mut ring = Self {
            dir: dir.to_path_buf(),
            keys: Vec::new(),
        };
        if !dir.exists() {
            return Ok(ring);
        }
        let mode = fs::metadata(dir)
            .map_err(|e| file_error(dir, e))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o022 != 0 {
            return Err(KeyError::WritableDir {
                path: dir.to_path_buf(),
                mode,
            });
        }
        let mut paths: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| file_error(dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("pem"))
            .collect();
        paths.sort();
        for path in paths {
            ring.keys.push(load(&path)?);
        }
        Ok(ring)
    }

    /// A ring of `keys` kept elsewhere than in files (a shared database), oldest first.
    pub fn of(mut keys: Vec<SigningKey>) -> Self {
        keys.sort_by(|a, b| (a.created, &a.kid).cmp(&(b.created, &b.kid)));
        Self {
            dir: PathBuf::new(),
            keys,
        }
    }

    /// The key that signs.
    pub fn active(&self) -> Option<&SigningKey> {
        self.keys.last()
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// Adds a new key of `alg`, which signs from now on.
    pub fn rotate(&mut self, alg: SigningAlg, now: u64) -> Result<&SigningKey, KeyError> {
        self.generate(alg, now)
    }

    /// When key `index` stopped signing: when its successor was created.
    fn retired_at(&self, index: usize) -> Option<u64> {
        self.keys.get(index + 1).map(|next| next.created)
    }

    /// Keys whose tokens may still be live at `now`: the active one, those retired less than
    /// `max_ttl` ago, and those `issued_until` (kid → latest expiry of a token it signed) says
    /// still have live tokens. The last matters when a server kept signing with a key after a
    /// newer one was generated, until it restarted.
    pub fn verifying_keys(
        &self,
        now: u64,
        max_ttl: Duration,
        issued_until: &HashMap<String, u64>,
    ) -> Vec<&SigningKey> {
        self.keys
            .iter()
            .enumerate()
            .filter(|(i, key)| {
                let retired_recently = self
                    .retired_at(*i)
                    .is_none_or(|retired| retired.saturating_add(max_ttl.as_secs()) >= now);
                retired_recently || issued_until.get(&key.kid).is_some_and(|exp| *exp >= now)
            })
            .map(|(_, key)| key)
            .collect()
    }

    /// Drops the keys no token can need any more (deleting their files); returns their kids.
    pub fn prune(
        &mut self,
        now: u64,
        max_ttl: Duration,
        issued_until: &HashMap<String, u64>,
    ) -> Result<Vec<String>, KeyError> {
        let keep: Vec<String> = self
            .verifying_keys(now, max_ttl, issued_until)
            .iter()
            .map(|k| k.kid.clone())
            .collect();
        let mut dropped = Vec::new();
        let mut kept = Vec::new();
        for key in self.keys.drain(..) {
            if keep.contains(&key.kid) {
                kept.push(key);
            } else {
                if let Some(path) = &key.path {
                    fs::remove_file(path).map_err(|e| file_error(path, e))?;
                }
                dropped.push(key.kid);
            }
        }
        self.keys = kept;
        Ok(dropped)
    }

    fn generate(&mut self, alg: SigningAlg, now: u64) -> Result<&SigningKey, KeyError> {
        let pem = generate_pem(alg)?;
        let created = now.max(self.active().map_or(0, |k| k.created));
        // Names sort by creation; a sequence number separates keys made in the same second.
        let sequence = self.keys.len();
        let path = self
            .dir
            .join(format!("{created:012}-{sequence:04}-{}.pem", alg.as_str()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| file_error(&path, e))?;
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| file_error(&path, e))?;
        let key = load(&path)?;
        self.keys.push(key);
        self.active()
            .ok_or_else(|| file_error(&path, "key vanished"))
    }
}

/// A new private key of `alg` as a PKCS#8 PEM file, generated by AWS-LC: ES256 on P-256
/// (the EC key with its public point inside), EdDSA on Ed25519 (PKCS#8 v1, no public key
/// inside: the form jsonwebtoken derives the public key from), RS256 with a 2048-bit modulus.
/// The files the earlier generator (the RustCrypto crates) wrote have the same form.
pub(crate) fn generate_pem(alg: SigningAlg) -> Result<String, KeyError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair,
    };
    let generate_error = |e: aws_lc_rs::error::Unspecified| KeyError::Generate {
        alg: alg.as_str(),
        message: e.to_string(),
    };
    let der = match alg {
        SigningAlg::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|key| key.to_pkcs8v1())
            .map_err(generate_error)?
            .as_ref()
            .to_vec(),
        SigningAlg::EdDsa => Ed25519KeyPair::generate()
            .and_then(|key| key.to_pkcs8v1())
            .map_err(generate_error)?
            .as_ref()
            .to_vec(),
        SigningAlg::Rs256 => RsaKeyPair::generate(KeySize::Rsa2048)
            .and_then(|key| key.as_der())
            .map_err(generate_error)?
            .as_ref()
            .to_vec(),
    };
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    Ok(pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", der),
        config,
    ))
}

/// Reads a key file named `<created>-<seq>-<alg>.pem`.
fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let meta = fs::metadata(path).map_err(|e| file_error(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| file_error(path, "not a key file name"))?;
    let mut parts = name.splitn(3, '-');
    let created = parts
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| file_error(path, "key file names start with the creation time"))?;
    let alg = match parts.nth(1) {
        Some("ES256") => SigningAlg::Es256,
        Some("EdDSA") => SigningAlg::EdDsa,
        Some("RS256") => SigningAlg::Rs256,
        _ => {
            return Err(file_error(
                path,
                "key file names end in -ES256, -EdDSA or -RS256",
            ));
        }
    };
    let pem = fs::read(path).map_err(|e| file_error(path, e))?;
    let mut key = SigningKey::from_pem(&pem, alg, created).map_err(|e| file_error(path, e))?;
    key.path = Some(path.to_path_buf());
    Ok(key)
}

impl SigningKey {
    /// The key of `alg` in `pem` (PKCS#8; RS256: PKCS#1), created at `created`, kept
    /// elsewhere than in a file.
    pub(crate) fn from_pem(pem: &[u8], alg: SigningAlg, created: u64) -> Result<Self, String> {
        let encoding = match alg {
            SigningAlg::Es256 => EncodingKey::from_ec_pem(pem),
            SigningAlg::EdDsa => EncodingKey::from_ed_pem(pem),
            SigningAlg::Rs256 => EncodingKey::from_rsa_pem(pem),
        }
        .map_err(|e| format!("not a {} private key: {e}", alg.as_str()))?;
        let signer = Signer::parse(alg, encoding.as_bytes())
            .map_err(|e| format!("not a {} private key: {e}", alg.as_str()))?;
        let mut public = Jwk::from_encoding_key(&encoding, algorithm(alg))
            .map_err(|e| format!("cannot derive the public key: {e}"))?;
        let kid = thumbprint(&public)?;
        public.common.key_id = Some(kid.clone());
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        public.common.key_algorithm = Some(match alg {
            SigningAlg::Es256 => KeyAlgorithm::ES256,
            SigningAlg::EdDsa => KeyAlgorithm::EdDSA,
            SigningAlg::Rs256 => KeyAlgorithm::RS256,
        });
        Ok(SigningKey {
            kid,
            alg,
            created,
            path: None,
            encoding,
            signer,
            public,
        })
    }
}

pub use jitgate_verify::dpop::thumbprint;

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn generates_a_key_once_and_reloads_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let keys = dir.path().join("keys");
        let ring = KeyRing::open(&keys, SigningAlg::Es256, 1000).unwrap();
        let kid = ring.active().unwrap().kid.clone();
        assert_eq!(
            fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let path = ring.active().unwrap().path.as_ref().unwrap();
        assert_eq!(
            fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = KeyRing::open(&keys, SigningAlg::Es256, 2000).unwrap();
        assert_eq!(again.keys().len(), 1);
        assert_eq!(again.active().unwrap().kid, kid);
    }

    #[test]
    fn refuses_keys_others_can_read() {
        let dir = tempfile::TempDir::new().unwrap();
        let ring = KeyRing::open(dir.path(), SigningAlg::Es256, 1000).unwrap();
        let path = ring.active().unwrap().path.clone().unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = KeyRing::open(dir.path(), SigningAlg::Es256, 1000).unwrap_err();
        assert!(
            matches!(err, KeyError::Permissions { mode: 0o640, .. }),
            "{err}"
        );
    }

    #[test]
    fn kids_are_rfc7638_thumbprints_for_every_algorithm() {
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256] {
            let dir = tempfile::TempDir::new().unwrap();
            let ring = KeyRing::open(dir.path(), alg, 1000).unwrap();
            let key = ring.active().unwrap();
            assert_eq!(key.kid.len(), 43, "{alg:?}: base64url of 32 bytes");
            assert_eq!(key.public.common.key_id.as_deref(), Some(key.kid.as_str()));
        }
    }

    /// The PEM files of `dir`, mode 0600 in a temp dir of mode 0700, as the ring wants them.
    fn private_copy(dir: &Path) -> tempfile::TempDir {
        let copy = tempfile::TempDir::new().unwrap();
        fs::set_permissions(copy.path(), fs::Permissions::from_mode(0o700)).unwrap();
        for entry in fs::read_dir(dir).unwrap() {
            let from = entry.unwrap().path();
            let to = copy.path().join(from.file_name().unwrap());
            fs::copy(&from, &to).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(0o600)).unwrap();
        }
        copy
    }

    /// The DER of a PKCS#8 PEM file.
    fn der(pem_text: &[u8]) -> Vec<u8> {
        let parsed = pem::parse(pem_text).unwrap();
        assert_eq!(parsed.tag(), "PRIVATE KEY");
        parsed.into_contents()
    }

    #[test]
    fn keys_written_by_the_earlier_generator_still_load_and_sign() {
        // One key of each algorithm as jitgate wrote them before AWS-LC generated keys (the
        // p256, ed25519-dalek and rsa crates; test keys, never used elsewhere).
        let legacy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/legacy-keys");
        let copy = private_copy(&legacy);
        let ring = KeyRing::read(copy.path()).unwrap();
        let algs: Vec<SigningAlg> = ring.keys().iter().map(|k| k.alg).collect();
        assert_eq!(
            algs,
            [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256]
        );
        for key in ring.keys() {
            use base64::Engine as _;
            let message = b"header.payload";
            let signature = key.signer.sign(message).unwrap();
            let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature);
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&key.public).unwrap();
            let valid =
                jsonwebtoken::crypto::verify(&signature, message, &decoding, algorithm(key.alg));
            assert!(valid.unwrap(), "{:?}", key.alg);
        }
    }

    #[test]
    fn generated_keys_have_the_form_of_the_earlier_ones() {
        // The same PKCS#8 version, algorithm identifier and inner key structure, so a jitgate
        // from before the change reads the new files too: only key material and, for RSA, the
        // lengths of its integers differ.
        let legacy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/legacy-keys");
        for (alg, file, same) in [
            // Version 0, id-ecPublicKey with P-256, an ECPrivateKey (v1, 32-byte scalar, and the
            // public point: 138 bytes in all).
            (SigningAlg::Es256, "000000001000-0000-ES256.pem", 0..36),
            // Version 0 (v1: no public key inside), id-Ed25519, the 32-byte seed.
            (SigningAlg::EdDsa, "000000001000-0001-EdDSA.pem", 0..16),
            // Version 0, rsaEncryption with NULL parameters...
            (SigningAlg::Rs256, "000000001000-0002-RS256.pem", 4..22),
            // ...and a PKCS#1 RSAPrivateKey, version 0, with a 2048-bit modulus.
            (SigningAlg::Rs256, "000000001000-0002-RS256.pem", 30..38),
        ] {
            let old = der(&fs::read(legacy.join(file)).unwrap());
            let new = der(generate_pem(alg).unwrap().as_bytes());
            if alg != SigningAlg::Rs256 {
                assert_eq!(new.len(), old.len(), "{alg:?}");
            }
            assert_eq!(new[same.clone()], old[same], "{alg:?}");
        }
    }

    #[test]
    fn ed25519_thumbprint_matches_rfc8037_example() {
        // RFC 8037 Appendix A.3.
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }))
        .unwrap();
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn rotation_keeps_old_keys_until_their_tokens_expire() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut ring = KeyRing::open(dir.path(), SigningAlg::Es256, 1000).unwrap();
        let old = ring.active().unwrap().kid.clone();
        let new = ring.rotate(SigningAlg::Es256, 5000).unwrap().kid.clone();
        assert_ne!(old, new);
        let kids = |ring: &KeyRing, now| -> Vec<String> {
            ring.verifying_keys(now, HOUR, &HashMap::new())
                .iter()
                .map(|k| k.kid.clone())
                .collect()
        };
        assert_eq!(kids(&ring, 5000 + 3600), [old.clone(), new.clone()]);
        assert_eq!(kids(&ring, 5000 + 3601), vec![new.clone()]);
        // A token the old key signed late (the server had not restarted) keeps it published.
        let late = HashMap::from([(old.clone(), 5000 + 7200)]);
        assert_eq!(ring.verifying_keys(5000 + 3601, HOUR, &late).len(), 2);
        assert!(ring.prune(5000 + 3601, HOUR, &late).unwrap().is_empty());
        assert_eq!(
            ring.prune(5000 + 3601, HOUR, &HashMap::new()).unwrap(),
            [old]
        );
        let reopened = KeyRing::open(dir.path(), SigningAlg::Es256, 9000).unwrap();
        assert_eq!(reopened.keys().len(), 1);
        assert_eq!(reopened.active().unwrap().kid, new);
    }

    #[test]
    fn a_new_algorithm_starts_a_new_key() {
        let dir = tempfile::TempDir::new().unwrap();
        KeyRing::open(dir.path(), SigningAlg::Es256, 1000).unwrap();
        let ring = KeyRing::open(dir.path(), SigningAlg::EdDsa, 2000).unwrap();
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.active().unwrap().alg, SigningAlg::EdDsa);
    }
}
