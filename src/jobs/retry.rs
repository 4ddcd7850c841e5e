//! When to try a failed job again: exponential backoff with jitter, or the provider's own
//! delay when it names one.

use std::time::Duration;

/// The first retry waits about this long; each further one twice as long.
pub(crate) const BASE_DELAY: Duration = Duration::from_secs(2);
/// No single wait is longer than this.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(120);

/// The wait before attempt `attempt + 1`, given `attempt` attempts so far (1-based), the
/// provider's requested delay, and a jitter fraction in `[0, 1)`.
pub(crate) fn backoff(attempt: u32, requested: Option<Duration>, jitter: f64) -> Duration {
    let jitter = Duration::from_secs_f64(jitter.clamp(0.0, 1.0));
    if let Some(requested) = requested {
        return (requested + jitter / 4).min(MAX_DELAY);
    }
    let exponent = attempt.saturating_sub(1).min(16);
    let base = BASE_DELAY.saturating_mul(1 << exponent);
    (base + jitter).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1, None, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(2, None, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(4, None, 0.5), Duration::from_millis(16_500));
        assert_eq!(backoff(30, None, 0.0), MAX_DELAY);
    }

    #[test]
    fn a_requested_delay_wins() {
        let wait = backoff(1, Some(Duration::from_secs(23)), 0.0);
        assert_eq!(wait, Duration::from_secs(23));
        assert!(backoff(1, Some(Duration::from_secs(23)), 0.99) < Duration::from_secs(24));
        assert_eq!(backoff(1, Some(Duration::from_secs(900)), 0.0), MAX_DELAY);
    }
}
