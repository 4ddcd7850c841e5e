//! Stripe webhook signatures, as a pure function: `Stripe-Signature: t=…,v1=…[,v1=…]` is an
//! HMAC-SHA256 over `"{t}.{raw body}"` keyed with the endpoint secret (the whole `whsec_…`
//! string as bytes). Any `v1` matching any configured secret passes (secrets are rolled with
//! an overlap), compared in constant time, within a tolerance of the timestamp.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Stripe's recommended tolerance between the signature's timestamp and now.
pub(crate) const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    #[error("no v1 signature in the header")]
    NoSignature,
    #[error("the signature is too old or from the future")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks `header` against the raw `body` for any of `secrets`, at Unix time `now`.
/// Returns the signature's timestamp.
pub(crate) fn verify(
    header: &str,
    body: &[u8],
    secrets: &[&str],
    now: i64,
    tolerance: i64,
) -> Result<i64, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            // Other schemes (v0 is Stripe's test scheme) are ignored, as Stripe's libraries do.
            "v1" => {
                if let Ok(bytes) = hex::decode(value) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    let matched = secrets.iter().any(|secret| {
        signatures.iter().any(|signature| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
                return false;
            };
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            // verify_slice compares in constant time.
            mac.verify_slice(signature).is_ok()
        })
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if (now - timestamp).abs() > tolerance {
        return Err(SignatureError::Stale);
    }
    Ok(timestamp)
}

/// The `v1` signature of `body` at `timestamp` with `secret` (for tests and tooling).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret_123";
    const BODY: &[u8] =
        br#"{"id":"evt_test_1","object":"event","type":"customer.subscription.deleted"}"#;
    const T: i64 = 1_700_000_000;
    /// From spec/stripe.md, computed with `openssl dgst -sha256 -hmac`.
    const V1: &str = "840963d6cef4b7a05941ea7de28ce3f03eba03bb215d3cb402b4e8ecf622f474";

    #[test]
    fn the_reference_vector_verifies() {
        assert_eq!(sign(SECRET, T, BODY), V1);
        let header = format!("t={T},v1={V1}");
        assert_eq!(
            verify(&header, BODY, &[SECRET], T + 10, TOLERANCE_SECS),
            Ok(T)
        );
    }

    #[test]
    fn tampering_and_wrong_secrets_are_refused() {
        let header = format!("t={T},v1={V1}");
        let tampered =
            br#"{"id":"evt_test_1","object":"event","type":"customer.subscription.created"}"#;
        assert_eq!(
            verify(&header, tampered, &[SECRET], T, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, BODY, &["whsec_other"], T, 300),
            Err(SignatureError::Mismatch)
        );
        // A signature for another timestamp does not transfer.
        let moved = format!("t={},v1={V1}", T + 1);
        assert_eq!(
            verify(&moved, BODY, &[SECRET], T, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_tolerance_applies_both_ways() {
        let header = format!("t={T},v1={V1}");
        assert!(verify(&header, BODY, &[SECRET], T + 300, 300).is_ok());
        assert_eq!(
            verify(&header, BODY, &[SECRET], T + 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&header, BODY, &[SECRET], T - 301, 300),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn any_v1_under_any_secret_is_accepted_while_rolling() {
        let rotated = format!("t={T},v1={},v1={V1}", "ab".repeat(32));
        assert_eq!(verify(&rotated, BODY, &[SECRET], T, 300), Ok(T));
        let header = format!("t={T},v1={V1}");
        assert_eq!(verify(&header, BODY, &["whsec_new", SECRET], T, 300), Ok(T));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in ["", "garbage", "v1=abc", &format!("t=soon,v1={V1}")] {
            assert_eq!(
                verify(header, BODY, &[SECRET], T, 300),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
        assert_eq!(
            verify(&format!("t={T},v0={V1}"), BODY, &[SECRET], T, 300),
            Err(SignatureError::NoSignature)
        );
        assert_eq!(
            verify(&format!("t={T},v1=zz"), BODY, &[SECRET], T, 300),
            Err(SignatureError::NoSignature)
        );
    }
}
