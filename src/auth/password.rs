//! Passwords: validation and Argon2id hashing, run on the blocking pool so a hash (tens of
//! milliseconds of CPU) never stalls the async runtime.

use std::sync::OnceLock;

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::{AppError, Result};

/// A password that meets the rules (8 to 128 characters). Never logged: `Debug` hides it.
pub(crate) struct Password(String);

impl Password {
    pub(crate) const MIN_CHARS: usize = 8;
    pub(crate) const MAX_CHARS: usize = 128;

    pub(crate) fn parse(field: &str, input: String) -> Result<Self> {
        let chars = input.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) {
            return Err(AppError::invalid(
                field,
                &format!(
                    "must be {} to {} characters",
                    Self::MIN_CHARS,
                    Self::MAX_CHARS
                ),
            ));
        }
        Ok(Self(input))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Hashes with Argon2id (default parameters: 19 MiB, 2 passes, the OWASP recommendation).
pub(crate) async fn hash(password: Password) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.0.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|err| anyhow::anyhow!("hashing a password: {err}"))
    })
    .await
    .context("password hashing task")?
    .map_err(AppError::from)
}

/// Checks `password` against `stored`. With no stored hash it still spends the time of one
/// check, so response times do not tell which accounts have a password.
pub(crate) async fn verify(password: String, stored: Option<String>) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let has_hash = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        has_hash && matches
    })
    .await
    .context("password verification task")
    .map_err(AppError::from)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"gemchat timing equaliser")
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash(Password("correct horse".into())).await.ok();
        assert!(
            stored
                .as_deref()
                .is_some_and(|h| h.starts_with("$argon2id$"))
        );
        assert!(
            verify("correct horse".into(), stored.clone())
                .await
                .unwrap_or(false)
        );
        assert!(!verify("wrong horse".into(), stored).await.unwrap_or(true));
        assert!(!verify("correct horse".into(), None).await.unwrap_or(true));
    }

    #[test]
    fn length_rules() {
        assert!(Password::parse("p", "short".into()).is_err());
        assert!(Password::parse("p", "x".repeat(129)).is_err());
        assert!(Password::parse("p", "ü".repeat(8)).is_ok());
    }
}
