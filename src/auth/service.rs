//! Auth use cases: sign-up, one-time codes, password sign-in, password change and reset, and
//! sessions. Plain Rust over the ports on [`App`]; no HTTP here.

use chrono::{DateTime, Utc};

use super::model::{ClientInfo, Session, SessionId, SessionMethod};
use super::otp::{self, AttemptOutcome, OtpPurpose, OtpRefusal};
use super::password::{self, Password};
use super::repo::{NewOtp, Replacing};
use super::tokens::Authenticated;
use crate::app::App;
use crate::config::OtpDelivery;
use crate::error::{AppError, Result};
use crate::ratelimit::Scope;
use crate::storage::error::StoreError;
use crate::users::model::{MobileNumber, Tier, User, UserId, UserName};

/// A sign-up as received, before validation.
pub(crate) struct SignupInput {
    pub(crate) mobile_number: String,
    pub(crate) name: Option<String>,
    pub(crate) password: Option<String>,
}

/// A code was issued; `code` is present only when delivery is by response (mocked SMS).
pub(crate) struct OtpIssued {
    pub(crate) code: Option<String>,
    pub(crate) expires_in: i64,
    pub(crate) delivery: OtpDelivery,
}

/// A freshly started session with its token.
pub(crate) struct SessionIssued {
    pub(crate) token: String,
    pub(crate) expires_in: i64,
    pub(crate) user: User,
}

pub(crate) fn parse_mobile(app: &App, input: &str) -> Result<MobileNumber> {
    MobileNumber::parse(input, app.region).map_err(AppError::InvalidMobileNumber)
}

pub(crate) async fn signup(app: &App, input: SignupInput) -> Result<User> {
    let mobile = parse_mobile(app, &input.mobile_number)?;
    check_region(app, &mobile)?;
    let name = input
        .name
        .as_deref()
        .map(UserName::parse)
        .transpose()
        .map_err(|why| AppError::invalid("name", &why))?;
    let password = input
        .password
        .map(|p| Password::parse("password", p))
        .transpose()?;
    let password_hash = match password {
        Some(password) => Some(password::hash(password).await?),
        None => None,
    };
    let now = app.clock.now();
    let user = User {
        id: UserId::new(),
        mobile_number: mobile,
        name: name.map(|n| n.as_str().to_owned()),
        password_hash,
        tier: Tier::Basic,
        disabled: false,
        is_admin: false,
        created_at: now,
        updated_at: now,
    };
    match app.store.users.insert(&user).await {
        Ok(()) => Ok(user),
        Err(StoreError::Conflict) => Err(AppError::Conflict {
            code: "mobile_number_taken",
            detail: "An account with this mobile number exists; sign in instead.",
        }),
        Err(err) => Err(err.into()),
    }
}

async fn existing_user(app: &App, mobile: &MobileNumber) -> Result<User> {
    let user = app
        .store
        .users
        .find_by_mobile(mobile, app.clock.now())
        .await?
        .ok_or(AppError::NotFoundCode {
            code: "user_not_found",
            detail: "No account has this mobile number; sign up first.",
        })?;
    if user.disabled {
        return Err(AppError::AccountDisabled);
    }
    Ok(user)
}

/// Refuses numbers of regions that `OTP_ALLOWED_REGIONS` leaves out (SMS-pumping fraud sends
/// codes to premium-rate numbers abroad).
fn check_region(app: &App, mobile: &MobileNumber) -> Result<()> {
    let Some(allowed) = &app.allowed_regions else {
        return Ok(());
    };
    match mobile.region() {
        Some(region) if allowed.contains(&region) => Ok(()),
        _ => Err(AppError::RegionNotAllowed),
    }
}

/// Counts a code against its region's daily ceiling (`OTP_REGION_DAILY_LIMIT`), shared by every
/// process through Redis.
async fn count_against_region(app: &App, mobile: &MobileNumber, now: DateTime<Utc>) -> Result<()> {
    let Some(limit) = app.config.otp_region_daily_limit else {
        return Ok(());
    };
    let region = mobile
        .region()
        .map_or_else(|| "unknown".to_owned(), |region| format!("{region:?}"));
    app.limiter
        .hit(Scope::SmsRegion, &region, limit, now)
        .await
        .map_err(|retry_after| {
            metrics::counter!("gemchat_rate_limited_total", "scope" => Scope::SmsRegion.as_str())
                .increment(1);
            tracing::warn!(region, limit, "daily ceiling of codes for a region reached");
            AppError::RateLimited {
                code: "otp_region_limit",
                detail: format!(
                    "Today's codes for numbers of this region are used up; ask again in {retry_after} s."
                ),
                retry_after,
            }
        })
}

fn refusal(app: &App, refusal: OtpRefusal) -> AppError {
    match refusal {
        OtpRefusal::Cooldown { retry_after } => {
            let secs = otp::retry_after_secs(retry_after);
            AppError::RateLimited {
                code: "otp_cooldown",
                detail: format!("A code was sent moments ago; ask again in {secs} s."),
                retry_after: secs,
            }
        }
        OtpRefusal::HourlyCap { retry_after } => {
            let secs = otp::retry_after_secs(retry_after);
            AppError::RateLimited {
                code: "otp_rate_limited",
                detail: format!(
                    "At most {} codes an hour may be sent to one number; ask again in {secs} s.",
                    app.otp_policy.per_hour
                ),
                retry_after: secs,
            }
        }
    }
}

/// Issues a code for `purpose` to an existing account, within the send limits. The send is
/// reserved first (so concurrent requests meet the cooldown), then the code is delivered, and
/// only a delivered code is stored and usable; a failed delivery gives the send back.
pub(crate) async fn send_otp(
    app: &App,
    mobile_input: &str,
    purpose: OtpPurpose,
) -> Result<OtpIssued> {
    let mobile = parse_mobile(app, mobile_input)?;
    check_region(app, &mobile)?;
    let user = existing_user(app, &mobile).await?;
    let now = app.clock.now();
    let send = app
        .store
        .otps
        .reserve(user.id, now, &app.otp_policy)
        .await?
        .map_err(|refused| refusal(app, refused))?;
    let code = otp::generate_code();
    let delivery = app.config.otp_delivery;
    let delivered = match count_against_region(app, &mobile, now).await {
        Err(refused) => Err(refused),
        Ok(()) if delivery == OtpDelivery::Response => Ok(()),
        Ok(()) => app
            .sms
            .send_code(&mobile, &code)
            .await
            .map_err(AppError::from),
    };
    if let Err(err) = delivered {
        app.store.otps.release(send).await?;
        return Err(err);
    }
    app.store
        .otps
        .store(&NewOtp {
            user_id: user.id,
            purpose,
            code_hash: app.otp_key.hash(user.id, purpose, &code),
            created_at: now,
            expires_at: now + otp::CODE_TTL,
        })
        .await?;
    Ok(OtpIssued {
        code: (delivery == OtpDelivery::Response).then_some(code),
        expires_in: otp::CODE_TTL.num_seconds(),
        delivery,
    })
}

/// Checks a code of `purpose` and consumes it. Unknown numbers get the same answer as wrong
/// codes, so this endpoint does not reveal who has an account.
async fn redeem_otp(
    app: &App,
    mobile: &MobileNumber,
    code: &str,
    purpose: OtpPurpose,
) -> Result<User> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::invalid("otp", "must be 6 digits"));
    }
    let user = app
        .store
        .users
        .find_by_mobile(mobile, app.clock.now())
        .await?
        .ok_or(AppError::InvalidOtp)?;
    let attempt = app
        .store
        .otps
        .record_attempt(user.id, purpose)
        .await?
        .ok_or(AppError::InvalidOtp)?;
    let presented = app.otp_key.hash(user.id, purpose, code);
    let now = app.clock.now();
    match otp::judge(&attempt, &presented, now) {
        AttemptOutcome::Accepted => {
            if !app
                .store
                .otps
                .consume(user.id, purpose, &presented, now)
                .await?
            {
                Err(AppError::InvalidOtp)
            } else if user.disabled {
                // Told only to whoever holds a valid code.
                Err(AppError::AccountDisabled)
            } else {
                Ok(user)
            }
        }
        AttemptOutcome::Invalid => Err(AppError::InvalidOtp),
        AttemptOutcome::Exhausted => Err(AppError::OtpAttemptsExceeded),
    }
}

fn new_session(
    app: &App,
    user_id: UserId,
    method: SessionMethod,
    client: ClientInfo,
    now: DateTime<Utc>,
) -> Session {
    Session {
        id: SessionId::new(),
        user_id,
        method,
        created_at: now,
        expires_at: now + app.auth.keys().ttl,
        last_used_at: now,
        client,
    }
}

fn token_for(app: &App, session: &Session, user: User) -> Result<SessionIssued> {
    let token = app
        .auth
        .keys()
        .issue(session.user_id, session.id, session.created_at)?;
    Ok(SessionIssued {
        token,
        expires_in: app.auth.keys().ttl.num_seconds(),
        user,
    })
}

async fn start_session(
    app: &App,
    user: User,
    method: SessionMethod,
    client: ClientInfo,
) -> Result<SessionIssued> {
    let session = new_session(app, user.id, method, client, app.clock.now());
    app.store.sessions.insert(&session).await?;
    token_for(app, &session, user)
}

pub(crate) async fn verify_otp(
    app: &App,
    mobile_input: &str,
    code: &str,
    client: ClientInfo,
) -> Result<SessionIssued> {
    let mobile = parse_mobile(app, mobile_input)?;
    let user = redeem_otp(app, &mobile, code, OtpPurpose::Login).await?;
    start_session(app, user, SessionMethod::Otp, client).await
}

pub(crate) async fn login(
    app: &App,
    mobile_input: &str,
    password: String,
    client: ClientInfo,
) -> Result<SessionIssued> {
    let mobile = parse_mobile(app, mobile_input)?;
    let user = app
        .store
        .users
        .find_by_mobile(&mobile, app.clock.now())
        .await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    // Verify even for unknown numbers, so timing does not reveal which numbers exist.
    let matches = password::verify(password, stored).await?;
    match user {
        // Told only to whoever knows the password.
        Some(user) if matches && user.disabled => Err(AppError::AccountDisabled),
        Some(user) if matches => start_session(app, user, SessionMethod::Password, client).await,
        _ => Err(AppError::InvalidCredentials),
    }
}

/// Sets a new password, revokes every session of the user and starts a fresh one.
async fn replace_password(
    app: &App,
    user: User,
    new_password: Password,
    method: SessionMethod,
    client: ClientInfo,
) -> Result<SessionIssued> {
    let hash = password::hash(new_password).await?;
    let session = new_session(app, user.id, method, client, app.clock.now());
    // A change replaces the password it was proven with (or none); a reset, whatever is there.
    let replacing = match method {
        SessionMethod::Reset => Replacing::Any,
        _ => Replacing::Exactly(user.password_hash.as_deref()),
    };
    let changed = app
        .store
        .sessions
        .set_password_and_restart(&hash, replacing, &session)
        .await;
    match changed {
        // Another change won the race: the current password given is no longer the current one.
        Err(StoreError::Conflict) => return Err(AppError::InvalidCredentials),
        other => other?,
    }
    app.auth.forget_user(user.id).await;
    app.user_cache.invalidate(user.id).await;
    let user = User {
        password_hash: Some(hash),
        updated_at: session.created_at,
        ..user
    };
    token_for(app, &session, user)
}

pub(crate) async fn reset_password(
    app: &App,
    mobile_input: &str,
    code: &str,
    new_password: String,
    client: ClientInfo,
) -> Result<SessionIssued> {
    let mobile = parse_mobile(app, mobile_input)?;
    let new_password = Password::parse("new_password", new_password)?;
    let user = redeem_otp(app, &mobile, code, OtpPurpose::Reset).await?;
    replace_password(app, user, new_password, SessionMethod::Reset, client).await
}

pub(crate) async fn change_password(
    app: &App,
    who: Authenticated,
    current: Option<String>,
    new_password: String,
    client: ClientInfo,
) -> Result<SessionIssued> {
    let new_password = Password::parse("new_password", new_password)?;
    let user = app
        .store
        .users
        .find_by_id(who.user_id, app.clock.now())
        .await?
        .ok_or(AppError::Unauthorized)?;
    if user.has_password() {
        let current = current.ok_or_else(|| {
            AppError::invalid(
                "current_password",
                "is required because the account has a password",
            )
        })?;
        if !password::verify(current, user.password_hash.clone()).await? {
            return Err(AppError::InvalidCredentials);
        }
    }
    replace_password(
        app,
        user,
        new_password,
        SessionMethod::PasswordChange,
        client,
    )
    .await
}

pub(crate) async fn logout(app: &App, who: Authenticated) -> Result<()> {
    revoke_session(app, who, who.session_id).await
}

pub(crate) async fn list_sessions(app: &App, who: Authenticated) -> Result<Vec<Session>> {
    Ok(app
        .store
        .sessions
        .list_live(who.user_id, app.clock.now())
        .await?)
}

pub(crate) async fn revoke_session(app: &App, who: Authenticated, id: SessionId) -> Result<()> {
    let revoked = app
        .store
        .sessions
        .revoke(who.user_id, id, app.clock.now())
        .await?;
    app.auth.forget(id).await;
    if revoked {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}
