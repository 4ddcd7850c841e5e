//! Access tokens: HS256 JWTs with `sub`, `iat`, `exp` and `jti` (the session id), and the
//! server secret that signs them (generated once into the data folder when not configured).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::SessionId;
use crate::users::model::UserId;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: Uuid,
    pub(crate) iat: i64,
    pub(crate) exp: i64,
    pub(crate) jti: Uuid,
}

/// Signs and checks tokens.
pub(crate) struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub(crate) ttl: Duration,
}

impl JwtKeys {
    pub(crate) fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Our own processes issue and check these tokens; no clock skew to absorb.
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// A token for `session`, valid from `now` for the configured lifetime.
    pub(crate) fn issue(
        &self,
        user: UserId,
        session: SessionId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            sub: user.0,
            iat: now.timestamp(),
            exp: (now + self.ttl).timestamp(),
            jti: session.0,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .context("signing a token")
    }

    /// The claims of a well-signed, unexpired HS256 token; `None` for anything else.
    pub(crate) fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// Name of the generated secret inside the data folder.
const SECRET_FILE: &str = "jwt_secret";

/// The configured secret, or the one kept in `data_dir` (created on first run, mode 0600).
pub(crate) fn load_or_generate_secret(
    configured: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = configured {
        if secret.len() < 32 {
            tracing::warn!(
                "JWT_SECRET is shorter than 32 bytes; use a long random value in production"
            );
        }
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join(SECRET_FILE);
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data folder {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let generated = hex::encode(bytes);
    match create_private(&path) {
        Ok(mut file) => {
            file.write_all(generated.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::warn!(
                path = %path.display(),
                "JWT_SECRET is not set: generated a signing secret and stored it in the data folder. \
                 Set JWT_SECRET in production, and the same value on every process."
            );
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            tracing::warn!(
                path = %path.display(),
                "JWT_SECRET is not set: using the secret generated earlier in the data folder"
            );
        }
        Err(err) => return Err(err).with_context(|| format!("creating {}", path.display())),
    }
    let stored =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let stored = stored.trim();
    anyhow::ensure!(
        stored.len() >= 32,
        "{} is truncated; delete it to generate a new secret",
        path.display()
    );
    Ok(stored.as_bytes().to_vec())
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_other_keys() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef", Duration::hours(1));
        let user = UserId::new();
        let session = SessionId::new();
        let token = keys.issue(user, session, Utc::now()).unwrap_or_default();
        let claims = keys.verify(&token);
        assert_eq!(
            claims.as_ref().map(|c| (c.sub, c.jti)),
            Some((user.0, session.0))
        );
        let other = JwtKeys::new(b"another secret, also long enough", Duration::hours(1));
        assert!(other.verify(&token).is_none());
        let expired = keys
            .issue(user, session, Utc::now() - Duration::hours(2))
            .unwrap_or_default();
        assert!(keys.verify(&expired).is_none());
    }

    #[test]
    fn the_generated_secret_is_kept_and_private() {
        let dir = std::env::temp_dir().join(format!("gemchat-secret-{}", Uuid::now_v7()));
        let first = load_or_generate_secret(None, &dir).ok();
        let second = load_or_generate_secret(None, &dir).ok();
        assert!(first.is_some());
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(SECRET_FILE)).map(|m| m.permissions().mode());
            assert_eq!(mode.map(|m| m & 0o777).ok(), Some(0o600));
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
