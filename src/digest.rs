//! Content digests: parse `algorithm:hex`, compute over the exact bytes received, compare.
//!
//! Digest the bytes you received, then parse; never re-serialize what is hashed (STYLE rule 4).

use std::fmt;

use sha2::{Digest as _, Sha256, Sha512};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

/// A validated digest such as `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest `{0}`: expected sha256:<64 hex> or sha512:<128 hex>")]
    Invalid(String),
    #[error("digest mismatch: expected {expected}, computed {actual}")]
    Mismatch { expected: Digest, actual: Digest },
}

impl Digest {
    /// Parse `sha256:<hex>` / `sha512:<hex>` (lowercase hex only, exact length).
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let invalid = || DigestError::Invalid(s.chars().take(200).collect());
        let (algo, hex) = s.split_once(':').ok_or_else(invalid)?;
        let algorithm = match algo {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(invalid()),
        };
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid());
        }
        Ok(Self {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// Digest `bytes` with `algorithm`.
    pub fn compute(algorithm: Algorithm, bytes: &[u8]) -> Self {
        let hex = match algorithm {
            Algorithm::Sha256 => hex::encode(Sha256::digest(bytes)),
            Algorithm::Sha512 => hex::encode(Sha512::digest(bytes)),
        };
        Self { algorithm, hex }
    }

    pub fn sha256(bytes: &[u8]) -> Self {
        Self::compute(Algorithm::Sha256, bytes)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Check that `bytes` hash to this digest (with this digest's algorithm).
    pub fn verify(&self, bytes: &[u8]) -> Result<(), DigestError> {
        let actual = Self::compute(self.algorithm, bytes);
        if &actual == self {
            Ok(())
        } else {
            Err(DigestError::Mismatch {
                expected: self.clone(),
                actual,
            })
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computed_digest_round_trips_through_parse() {
        let d = Digest::sha256(b"hello");
        assert_eq!(
            d.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(&d.to_string()), Ok(d));
    }

    #[test]
    fn malformed_digests_are_rejected() {
        for s in [
            "",
            "sha256",
            "sha256:",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982",
            "sha256:../../etc/passwd",
        ] {
            assert!(Digest::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn verify_detects_a_changed_byte() {
        let d = Digest::compute(Algorithm::Sha512, b"abc");
        assert!(d.verify(b"abc").is_ok());
        assert!(matches!(
            d.verify(b"abd"),
            Err(DigestError::Mismatch { .. })
        ));
    }
}
