//! The SMS port and its one adapter: SMS is mocked, so "sending" writes the code to the log
//! (`OTP_DELIVERY=log`); with `OTP_DELIVERY=response` the code goes back in the response
//! instead and is never logged.

use async_trait::async_trait;

use crate::users::model::MobileNumber;

#[async_trait]
pub(crate) trait SmsSender: Send + Sync {
    async fn send_code(&self, to: &MobileNumber, code: &str) -> anyhow::Result<()>;
}

/// Delivers codes to the log, as a stand-in for an SMS gateway.
pub(crate) struct LogSmsSender;

#[async_trait]
impl SmsSender for LogSmsSender {
    async fn send_code(&self, to: &MobileNumber, code: &str) -> anyhow::Result<()> {
        // This line is the mocked SMS itself (OTP_DELIVERY=log), the one place a code is logged.
        tracing::info!(target: "gemchat::sms", to = %to, code, "SMS (mocked): your gemchat code");
        Ok(())
    }
}
