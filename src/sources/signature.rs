//! Body signatures of senders that sign (SPEC §3 `hmacSecretFile`): GitHub's `X-Hub-Signature-256` and
//! Artifactory's `X-JFrog-Event-Auth`. Always over the raw body as received, always in constant time.
//!
//! This module only answers "does this signature match these bytes"; it never parses the body and never
//! logs the secret or the signature.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::RequestHeaders;

/// GitHub: `sha256=<hex HMAC-SHA256(secret, raw body)>`.
pub const GITHUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";
const GITHUB_SIGNATURE_PREFIX: &str = "sha256=";
/// Artifactory: the plain secret, or (with "use secret for signing") the hex HMAC-SHA256 of the body.
pub const JFROG_AUTH_HEADER: &str = "x-jfrog-event-auth";

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `body` under `secret`.
pub fn hmac_sha256(secret: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac = keyed(secret);
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn keyed(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (long keys are hashed), so this never fails.
    match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

/// Whether `hex_signature` is the HMAC-SHA256 of `body` under `secret` (hex of either case).
fn hex_mac_matches(secret: &[u8], body: &[u8], hex_signature: &str) -> bool {
    let Ok(given) = hex::decode(hex_signature.trim()) else {
        return false;
    };
    let mut mac = keyed(secret);
    mac.update(body);
    // `verify_slice` compares in constant time and refuses a wrong length.
    mac.verify_slice(&given).is_ok()
}

/// GitHub `X-Hub-Signature-256` over the raw body.
pub fn verify_github(secret: &[u8], headers: &RequestHeaders, body: &[u8]) -> bool {
    headers
        .get(GITHUB_SIGNATURE_HEADER)
        .and_then(|v| v.trim().strip_prefix(GITHUB_SIGNATURE_PREFIX))
        .is_some_and(|hex| hex_mac_matches(secret, body, hex))
}

/// Artifactory `X-JFrog-Event-Auth`: either form is accepted with `hmacSecretFile`, because the sender
/// decides which one it sends (its "use secret for signing" switch) and both prove knowledge of the secret.
pub fn verify_artifactory(secret: &[u8], headers: &RequestHeaders, body: &[u8]) -> bool {
    let Some(given) = headers.get(JFROG_AUTH_HEADER) else {
        return false;
    };
    let plain = given.len() == secret.len() && bool::from(given.as_bytes().ct_eq(secret));
    // Evaluate both so the time taken does not say which form was tried.
    let signed = hex_mac_matches(secret, body, given);
    !secret.is_empty() && (plain | signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, value: &str) -> RequestHeaders {
        RequestHeaders::new([(name.to_string(), value.to_string())])
    }

    #[test]
    fn the_documented_github_test_vector_verifies() {
        // GitHub's "validating webhook deliveries" example: this secret and payload give this signature.
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers("X-Hub-Signature-256", sig);
        assert!(verify_github(
            b"It's a Secret to Everybody",
            &h,
            b"Hello, World!"
        ));
        assert!(!verify_github(
            b"It's a Secret to Everybody",
            &h,
            b"Hello, World! "
        ));
    }

    #[test]
    fn github_signatures_are_refused_when_anything_is_off() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let good = hex::encode(hmac_sha256(b"s3cret", body));
        let cases = [
            (Some(format!("sha256={good}")), true),
            (Some(format!("sha256={}", good.to_uppercase())), true),
            (Some(good.clone()), false),
            (Some(format!("sha1={good}")), false),
            (Some(format!("sha256={}", &good[..62])), false),
            (Some("sha256=zz".to_string()), false),
            (
                Some(format!(
                    "sha256={}",
                    hex::encode(hmac_sha256(b"other", body))
                )),
                false,
            ),
            (None, false),
        ];
        for (value, want) in cases {
            let h = match &value {
                Some(v) => headers("x-hub-signature-256", v),
                None => RequestHeaders::default(),
            };
            assert_eq!(verify_github(b"s3cret", &h, body), want, "{value:?}");
        }
    }

    #[test]
    fn artifactory_accepts_the_plain_secret_or_the_body_hmac_and_nothing_else() {
        let body = br#"{"domain":"docker"}"#;
        let mac = hex::encode(hmac_sha256(b"s3cret", body));
        let cases = [
            (Some("s3cret".to_string()), true),
            (Some(mac.clone()), true),
            (Some(mac.to_uppercase()), true),
            (Some("s3cret ".to_string()), false),
            (Some("s3cre".to_string()), false),
            (Some(hex::encode(hmac_sha256(b"s3cret", b"{}"))), false),
            (Some(String::new()), false),
            (None, false),
        ];
        for (value, want) in cases {
            let h = match &value {
                Some(v) => headers("X-JFrog-Event-Auth", v),
                None => RequestHeaders::default(),
            };
            assert_eq!(verify_artifactory(b"s3cret", &h, body), want, "{value:?}");
        }
        assert!(!verify_artifactory(
            b"",
            &headers("x-jfrog-event-auth", ""),
            body
        ));
    }
}
