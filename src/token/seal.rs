//! The key-encryption key: signing keys kept in a shared database are sealed with it
//! (AES-256-GCM, a random nonce per key, the key's `kid` as associated data so a sealed key
//! cannot be passed off as another), and only replicas holding it can sign.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;

/// Why a key-encryption key or a sealed key is refused.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the key-encryption key must be 32 random bytes in base64 ({0})")]
    BadKey(String),
    #[error(
        "signing key {kid} does not open with this key-encryption key (another deployment's, \
         or the stored key was altered)"
    )]
    Open { kid: String },
    #[error("cannot seal signing key {kid}")]
    Seal { kid: String },
}

/// The 32-byte key that seals signing keys at rest. Its bytes never leave this type.
pub struct KeyEncryptionKey(RandomizedNonceKey);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(..)")
    }
}

impl KeyEncryptionKey {
    /// The key from its base64 form (standard or URL-safe, padding optional; surrounding
    /// whitespace ignored, as a file written by `openssl rand -base64 32` has a newline).
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|e| SealError::BadKey(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey(format!("{} bytes", bytes.len())));
        }
        RandomizedNonceKey::new(&AES_256_GCM, &bytes)
            .map(Self)
            .map_err(|e| SealError::BadKey(e.to_string()))
    }

    /// `secret` sealed for `kid`: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, kid: &str, secret: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut in_out = secret.to_vec();
        let nonce = self
            .0
            .seal_in_place_append_tag(Aad::from(kid.as_bytes()), &mut in_out)
            .map_err(|_| SealError::Seal { kid: kid.into() })?;
        let mut sealed = nonce.as_ref().to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// What [`KeyEncryptionKey::seal`] sealed for `kid`; an error for anything else.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let refused = || SealError::Open { kid: kid.into() };
        if sealed.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut in_out)
            .map_err(|_| refused())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEK: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";

    #[test]
    fn a_sealed_key_opens_only_for_its_kid_and_with_its_key() {
        let kek = KeyEncryptionKey::from_base64(&format!("{KEK}\n")).unwrap();
        let sealed = kek.seal("kid-1", b"private").unwrap();
        assert!(
            !sealed.windows(7).any(|w| w == b"private"),
            "sealed, not copied"
        );
        assert_eq!(kek.open("kid-1", &sealed).unwrap(), b"private");
        assert!(matches!(
            kek.open("kid-2", &sealed),
            Err(SealError::Open { .. })
        ));
        let other = KeyEncryptionKey::from_base64(&"A".repeat(43)).unwrap();
        assert!(other.open("kid-1", &sealed).is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(kek.open("kid-1", &altered).is_err());
        assert!(kek.open("kid-1", &sealed[..5]).is_err());
        assert_ne!(
            sealed,
            kek.seal("kid-1", b"private").unwrap(),
            "a fresh nonce each time"
        );
    }

    #[test]
    fn only_32_bytes_of_base64_make_a_key() {
        for bad in ["", "not base64!", "AAAA", &"A".repeat(60)] {
            assert!(KeyEncryptionKey::from_base64(bad).is_err(), "{bad:?}");
        }
        assert!(!format!("{:?}", KeyEncryptionKey::from_base64(KEK).unwrap()).contains(KEK));
    }
}
