//! The SMS port and its adapters: the mock, which writes the code to the log
//! (`OTP_DELIVERY=log`; with `response` the code goes back in the response instead and no SMS
//! is sent), and Twilio (`OTP_DELIVERY=twilio`, in [`super::twilio`]).

use async_trait::async_trait;

use crate::error::AppError;
use crate::users::model::MobileNumber;

/// Why an SMS was not sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SmsError {
    /// The gateway says the number cannot receive it: the user's mistake, not an outage.
    #[error("the number cannot receive SMS")]
    InvalidNumber,
    /// Anything else (the gateway down, slow, refusing our credentials, throttling us).
    #[error("SMS unavailable: {0}")]
    Unavailable(String),
}

impl From<SmsError> for AppError {
    fn from(err: SmsError) -> Self {
        match err {
            SmsError::InvalidNumber => {
                Self::InvalidMobileNumber("cannot receive text messages".into())
            }
            SmsError::Unavailable(cause) => Self::SmsUnavailable(cause),
        }
    }
}

#[async_trait]
pub(crate) trait SmsSender: Send + Sync {
    /// Sends `code` to `to`; `Ok` once the gateway accepted the message.
    async fn send_code(&self, to: &MobileNumber, code: &str) -> Result<(), SmsError>;
}

/// The text of the SMS that carries a code.
pub(crate) fn message(code: &str) -> String {
    format!("Your gemchat code is {code}. It expires in 5 minutes; never share it.")
}

/// Delivers codes to the log, as a stand-in for an SMS gateway.
pub(crate) struct LogSmsSender;

#[async_trait]
impl SmsSender for LogSmsSender {
    async fn send_code(&self, to: &MobileNumber, code: &str) -> Result<(), SmsError> {
        // This line is the mocked SMS itself (OTP_DELIVERY=log), the one place a code is logged.
        tracing::info!(target: "gemchat::sms", to = %to, code, "SMS (mocked): your gemchat code");
        Ok(())
    }
}
