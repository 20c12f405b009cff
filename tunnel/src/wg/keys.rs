//! WireGuard keys: x25519 key pairs and preshared keys, written as base64 like `wg(8)`.
//!
//! A [`PrivateKey`] never prints itself: it has no `Display`, and its `Debug` says `PrivateKey(..)`.
//! Its bytes are zeroed on drop by `x25519-dalek`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand_core::OsRng;
use x25519_dalek::{PublicKey as DalekPublic, StaticSecret};

/// Length in bytes of every WireGuard key.
pub const KEY_LEN: usize = 32;

/// Errors of key parsing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The text is not valid base64.
    #[error("key is not valid base64")]
    Base64,
    /// The decoded key does not have 32 bytes.
    #[error("key has {0} bytes, expected 32")]
    Length(usize),
}

fn decode(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let bytes = BASE64.decode(text.trim()).map_err(|_| KeyError::Base64)?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length(bytes.len()))
}

/// The public half of a node's key; identifies a peer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }
    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
    /// The base64 text, as `wg show` prints it.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }
    pub(crate) fn to_dalek(self) -> DalekPublic {
        DalekPublic::from(self.0)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        decode(s).map(Self)
    }
}

/// A node's private key. Secret: no `Display`, redacted `Debug`, zeroed on drop.
#[derive(Clone)]
pub struct PrivateKey(StaticSecret);

impl PrivateKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self(StaticSecret::random_from_rng(OsRng))
    }
    /// Wraps raw key bytes (clamped by x25519 when used, as `wg` does).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(StaticSecret::from(bytes))
    }
    /// Parses the base64 text of `wg genkey`.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode(text).map(Self::from_bytes)
    }
    /// The base64 text, for storing the key in the key file. Never log it.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.to_bytes())
    }
    /// The raw key bytes. Never log them.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }
    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(DalekPublic::from(&self.0).to_bytes())
    }
    pub(crate) fn to_dalek(&self) -> StaticSecret {
        self.0.clone()
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        // Comparing the public halves avoids a non-constant-time comparison of secrets.
        self.public_key() == other.public_key()
    }
}

impl Eq for PrivateKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

/// An optional symmetric key mixed into a peer's handshake. Secret like [`PrivateKey`].
#[derive(Clone, PartialEq, Eq)]
pub struct PresharedKey([u8; KEY_LEN]);

impl PresharedKey {
    /// A fresh random key (`wg genpsk`).
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut bytes);
        Self(bytes)
    }
    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }
    /// Parses base64 text.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode(text).map(Self)
    }
    /// The base64 text. Never log it.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }
    /// The raw key bytes. Never log them.
    pub const fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }
}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey(..)")
    }
}

impl Drop for PresharedKey {
    fn drop(&mut self) {
        // Best effort; the key also lives in the data path's handshake state.
        self.0 = [0; KEY_LEN];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7748 section 6.1 test vector (Alice).
    const ALICE_PRIVATE: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
    const ALICE_PUBLIC: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

    #[test]
    fn public_key_of_known_private_key() {
        let sk = PrivateKey::from_base64(ALICE_PRIVATE).unwrap();
        assert_eq!(sk.public_key().to_base64(), ALICE_PUBLIC);
        assert_eq!(sk.to_base64(), ALICE_PRIVATE);
    }

    #[test]
    fn generated_keys_differ_and_round_trip() {
        let a = PrivateKey::generate();
        let b = PrivateKey::generate();
        assert_ne!(a.public_key(), b.public_key());
        let again = PrivateKey::from_base64(&a.to_base64()).unwrap();
        assert_eq!(again.public_key(), a.public_key());
        let pk: PublicKey = a.public_key().to_string().parse().unwrap();
        assert_eq!(pk, a.public_key());
    }

    #[test]
    fn private_key_is_never_printed() {
        let sk = PrivateKey::from_base64(ALICE_PRIVATE).unwrap();
        assert_eq!(format!("{sk:?}"), "PrivateKey(..)");
        let psk = PresharedKey::generate();
        assert_eq!(format!("{psk:?}"), "PresharedKey(..)");
    }

    #[test]
    fn bad_keys_are_rejected() {
        assert_eq!("not base64!".parse::<PublicKey>(), Err(KeyError::Base64));
        assert_eq!("AAAA".parse::<PublicKey>(), Err(KeyError::Length(3)));
    }
}
