//! One-time codes, as pure rules: generation, keyed hashing, the issuance policy (cooldown and
//! hourly cap) and the judgement of an attempt. Storage applies them inside its transactions.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::users::model::UserId;

/// How long a code stays valid.
pub(crate) const CODE_TTL: Duration = Duration::minutes(5);
/// Attempts a code survives; the one that makes this many wrong guesses kills it.
pub(crate) const MAX_ATTEMPTS: u32 = 5;

/// What a code may be used for; a code of one purpose never serves the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpPurpose {
    Login,
    Reset,
}

impl OtpPurpose {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Reset => "reset",
        }
    }
}

/// A freshly generated code: six digits from the thread-local CSPRNG (ChaCha, OS-seeded).
pub(crate) fn generate_code() -> String {
    format!("{:06}", rand::random_range(0..1_000_000u32))
}

/// The key codes are hashed with at rest, so a database leak does not reveal live codes
/// (a plain hash of six digits is reversed by trying all million).
#[derive(Clone)]
pub(crate) struct OtpKey([u8; 32]);

impl OtpKey {
    /// Derives the OTP key from the server secret, so there is one secret to manage.
    pub(crate) fn derive(server_secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(server_secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"gemchat/otp-key/v1");
        Self(mac.finalize().into_bytes().into())
    }

    /// Hash of `code` bound to its user and purpose.
    pub(crate) fn hash(&self, user: UserId, purpose: OtpPurpose, code: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(user.0.as_bytes());
        mac.update(purpose.as_str().as_bytes());
        mac.update(b":");
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

impl std::fmt::Debug for OtpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpKey(..)")
    }
}

/// Why a code was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpRefusal {
    /// One was sent less than the cooldown ago.
    Cooldown { retry_after: Duration },
    /// The hourly cap is reached.
    HourlyCap { retry_after: Duration },
}

/// How often codes may be sent to one number (all purposes together).
#[derive(Debug, Clone, Copy)]
pub struct IssuePolicy {
    pub(crate) cooldown: Duration,
    pub(crate) per_hour: usize,
}

impl Default for IssuePolicy {
    fn default() -> Self {
        Self {
            cooldown: Duration::seconds(30),
            per_hour: 10,
        }
    }
}

impl IssuePolicy {
    /// The window the hourly cap counts over.
    pub(crate) const WINDOW: Duration = Duration::hours(1);

    /// Decides whether a code may be sent at `now`, given when earlier ones were sent.
    pub(crate) fn check(
        &self,
        sent: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> Result<(), OtpRefusal> {
        let window_start = now - Self::WINDOW;
        let mut recent: Vec<DateTime<Utc>> =
            sent.iter().copied().filter(|t| *t > window_start).collect();
        recent.sort_unstable();
        if let Some(last) = recent.last() {
            let ready_at = *last + self.cooldown;
            if ready_at > now {
                return Err(OtpRefusal::Cooldown {
                    retry_after: ready_at - now,
                });
            }
        }
        if recent.len() >= self.per_hour {
            // The cap frees up when the oldest send that still counts leaves the window.
            let freed_at = recent[recent.len() - self.per_hour] + Self::WINDOW;
            return Err(OtpRefusal::HourlyCap {
                retry_after: freed_at - now,
            });
        }
        Ok(())
    }
}

/// A stored code as seen right after an attempt was counted against it.
#[derive(Debug, Clone)]
pub struct OtpAttempt {
    pub code_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    /// Attempts including this one.
    pub attempts: u32,
}

/// The verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptOutcome {
    Accepted,
    Invalid,
    /// Too many wrong codes: this one is dead, a new one must be requested.
    Exhausted,
}

/// Judges an attempt whose count has already been recorded.
pub(crate) fn judge(
    attempt: &OtpAttempt,
    presented_hash: &[u8],
    now: DateTime<Utc>,
) -> AttemptOutcome {
    if attempt.attempts > MAX_ATTEMPTS {
        return AttemptOutcome::Exhausted;
    }
    if attempt.expires_at <= now {
        return AttemptOutcome::Invalid;
    }
    if bool::from(attempt.code_hash.as_slice().ct_eq(presented_hash)) {
        AttemptOutcome::Accepted
    } else if attempt.attempts >= MAX_ATTEMPTS {
        AttemptOutcome::Exhausted
    } else {
        AttemptOutcome::Invalid
    }
}

/// Whole seconds to wait, rounded up and at least one (for `Retry-After`).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let millis = wait.num_milliseconds().max(1);
    u64::try_from(millis.div_euclid(1000) + i64::from(millis % 1000 != 0)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..1000 {
            let code = generate_code();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn hashes_bind_key_user_and_purpose() {
        let key = OtpKey::derive(b"secret");
        let user = UserId::new();
        let h = key.hash(user, OtpPurpose::Login, "123456");
        assert_eq!(h, key.hash(user, OtpPurpose::Login, "123456"));
        assert_ne!(h, key.hash(user, OtpPurpose::Reset, "123456"));
        assert_ne!(h, key.hash(UserId::new(), OtpPurpose::Login, "123456"));
        assert_ne!(
            h,
            OtpKey::derive(b"other").hash(user, OtpPurpose::Login, "123456")
        );
    }

    #[test]
    fn cooldown_applies_for_thirty_seconds() {
        let policy = IssuePolicy::default();
        assert_eq!(policy.check(&[], at(0)), Ok(()));
        assert_eq!(
            policy.check(&[at(0)], at(10)),
            Err(OtpRefusal::Cooldown {
                retry_after: Duration::seconds(20)
            })
        );
        assert_eq!(policy.check(&[at(0)], at(30)), Ok(()));
    }

    #[test]
    fn eleventh_code_in_an_hour_is_refused_until_the_first_ages_out() {
        let policy = IssuePolicy::default();
        let sent: Vec<_> = (0..10).map(|i| at(i * 60)).collect();
        assert_eq!(
            policy.check(&sent, at(700)),
            Err(OtpRefusal::HourlyCap {
                retry_after: Duration::seconds(3600 - 700)
            })
        );
        assert_eq!(policy.check(&sent, at(3601)), Ok(()));
    }

    #[test]
    fn attempts_are_judged() {
        let key = OtpKey::derive(b"k");
        let user = UserId::new();
        let right = key.hash(user, OtpPurpose::Login, "111111");
        let wrong = key.hash(user, OtpPurpose::Login, "222222");
        let attempt = |attempts, expires| OtpAttempt {
            code_hash: right.clone(),
            expires_at: expires,
            attempts,
        };
        assert_eq!(
            judge(&attempt(1, at(300)), &right, at(0)),
            AttemptOutcome::Accepted
        );
        assert_eq!(
            judge(&attempt(1, at(300)), &wrong, at(0)),
            AttemptOutcome::Invalid
        );
        assert_eq!(
            judge(&attempt(4, at(300)), &wrong, at(0)),
            AttemptOutcome::Invalid
        );
        assert_eq!(
            judge(&attempt(5, at(300)), &wrong, at(0)),
            AttemptOutcome::Exhausted
        );
        assert_eq!(
            judge(&attempt(5, at(300)), &right, at(0)),
            AttemptOutcome::Accepted
        );
        assert_eq!(
            judge(&attempt(6, at(300)), &right, at(0)),
            AttemptOutcome::Exhausted
        );
        assert_eq!(
            judge(&attempt(1, at(300)), &right, at(300)),
            AttemptOutcome::Invalid
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::milliseconds(1)), 1);
        assert_eq!(retry_after_secs(Duration::seconds(20)), 20);
        assert_eq!(retry_after_secs(Duration::milliseconds(20_001)), 21);
        assert_eq!(retry_after_secs(Duration::seconds(-3)), 1);
    }
}
