//! Quota arithmetic: limits per tier, the UTC day, and the `Usage` report.

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::users::model::Tier;

/// Prompts per UTC day for each tier; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaPolicy {
    pub basic: Option<u32>,
    pub pro: Option<u32>,
}

impl QuotaPolicy {
    pub(crate) fn limit_for(&self, tier: Tier) -> Option<u32> {
        match tier {
            Tier::Basic => self.basic,
            Tier::Pro => self.pro,
        }
    }
}

/// What taking one prompt came to, judged from the day's count after the atomic take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Taken: the day's count now.
    Taken(u32),
    /// Refused: the limit was reached.
    Refused,
    /// The statement refused an unlimited plan: the database broke its own rule.
    Inconsistent,
}

/// Judges the atomic take (`INSERT … ON CONFLICT DO UPDATE … WHERE used < limit RETURNING
/// used`): `taken` is the count it returned, `None` when the `WHERE` refused the update. The
/// first take of a day inserts without a check, so a zero limit is refused here.
pub(crate) fn judge_take(taken: Option<u32>, limit: Option<u32>) -> Take {
    match (taken, limit) {
        (Some(used), Some(limit)) if used > limit => Take::Refused,
        (Some(used), _) => Take::Taken(used),
        (None, None) => Take::Inconsistent,
        (None, Some(_)) => Take::Refused,
    }
}

/// The UTC day `at` falls in.
pub(crate) fn day_of(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// The start of the UTC day after `at`, when the quota resets.
pub(crate) fn next_reset(at: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = day_of(at)
        .checked_add_days(Days::new(1))
        .unwrap_or(NaiveDate::MAX);
    tomorrow.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// A user's use on one UTC day (`GET /user/me/usage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageDay {
    #[schema(value_type = String, format = Date, example = "2026-11-22")]
    pub date: NaiveDate,
    /// Prompts taken (a prompt given back by a failed reply is not counted).
    pub prompts: u32,
    /// Tokens of the replies to that day's prompts, as Gemini counted them.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub thinking_tokens: u64,
}

impl UsageDay {
    /// A day without use.
    pub(crate) fn idle(date: NaiveDate) -> Self {
        Self {
            date,
            prompts: 0,
            input_tokens: 0,
            output_tokens: 0,
            thinking_tokens: 0,
        }
    }
}

/// Every day from `last` back to `days` days before it, newest first, with what `used`
/// says of it and zeros for days it does not name.
pub(crate) fn history(last: NaiveDate, days: u32, used: &[UsageDay]) -> Vec<UsageDay> {
    (0..u64::from(days))
        .filter_map(|back| last.checked_sub_days(Days::new(back)))
        .map(|date| {
            used.iter()
                .filter(|u| u.date == date)
                .fold(UsageDay::idle(date), |day, u| UsageDay {
                    prompts: day.prompts + u.prompts,
                    input_tokens: day.input_tokens + u.input_tokens,
                    output_tokens: day.output_tokens + u.output_tokens,
                    thinking_tokens: day.thinking_tokens + u.thinking_tokens,
                    ..day
                })
        })
        .collect()
}

#[cfg(test)]
mod history_tests {
    use super::*;

    #[test]
    fn every_day_is_listed_newest_first_with_zeros_where_idle() {
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).expect("a date");
        let used = [
            UsageDay {
                prompts: 3,
                ..UsageDay::idle(day(20))
            },
            UsageDay {
                input_tokens: 40,
                output_tokens: 7,
                thinking_tokens: 2,
                ..UsageDay::idle(day(20))
            },
            UsageDay {
                prompts: 1,
                ..UsageDay::idle(day(18))
            },
        ];
        let days = history(day(21), 4, &used);
        let dates: Vec<NaiveDate> = days.iter().map(|d| d.date).collect();
        assert_eq!(dates, [day(21), day(20), day(19), day(18)]);
        assert_eq!(days[0], UsageDay::idle(day(21)));
        assert_eq!(
            days[1],
            UsageDay {
                prompts: 3,
                input_tokens: 40,
                output_tokens: 7,
                thinking_tokens: 2,
                date: day(20)
            }
        );
        assert_eq!(days[3].prompts, 1);
    }
}

/// A user's prompt usage today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct Usage {
    #[schema(example = 3)]
    pub(crate) used_today: u32,
    /// `null` on an unlimited plan.
    #[schema(example = 5)]
    pub(crate) daily_limit: Option<u32>,
    /// `null` on an unlimited plan.
    #[schema(example = 2)]
    pub(crate) remaining: Option<u32>,
    /// Next UTC midnight.
    pub(crate) resets_at: DateTime<Utc>,
}

impl Usage {
    pub(crate) fn new(used_today: u32, daily_limit: Option<u32>, now: DateTime<Utc>) -> Self {
        Self {
            used_today,
            daily_limit,
            remaining: daily_limit.map(|limit| limit.saturating_sub(used_today)),
            resets_at: next_reset(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn usage_counts_down_and_resets_at_utc_midnight() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 22, 23, 59, 59)
            .single()
            .unwrap_or_default();
        let usage = Usage::new(3, Some(5), now);
        assert_eq!(usage.remaining, Some(2));
        assert_eq!(usage.resets_at.to_rfc3339(), "2026-11-23T00:00:00+00:00");
        assert_eq!(Usage::new(7, Some(5), now).remaining, Some(0));
        assert_eq!(Usage::new(7, None, now).remaining, None);
    }

    #[test]
    fn limits_follow_the_tier() {
        let policy = QuotaPolicy {
            basic: Some(5),
            pro: None,
        };
        assert_eq!(policy.limit_for(Tier::Basic), Some(5));
        assert_eq!(policy.limit_for(Tier::Pro), None);
    }

    #[test]
    fn takes_are_judged_against_the_limit() {
        assert_eq!(judge_take(Some(3), Some(5)), Take::Taken(3));
        assert_eq!(judge_take(Some(5), Some(5)), Take::Taken(5));
        assert_eq!(judge_take(None, Some(5)), Take::Refused);
        // A zero limit: the day's first take inserted 1 unchecked.
        assert_eq!(judge_take(Some(1), Some(0)), Take::Refused);
        assert_eq!(judge_take(Some(40), None), Take::Taken(40));
        assert_eq!(judge_take(None, None), Take::Inconsistent);
    }
}
