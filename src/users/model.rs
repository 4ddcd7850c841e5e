//! User domain types: ids, validated mobile numbers and names, plan tiers.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A user's id (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl UserId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A mobile number in E.164 form (`+919876543210`). Only [`MobileNumber::parse`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MobileNumber(String);

impl MobileNumber {
    /// Reads a number as people write it (spaces, dashes, brackets); one without a leading `+`
    /// is read in `default_region`. Impossible numbers are refused.
    pub fn parse(input: &str, default_region: phonenumber::country::Id) -> Result<Self, String> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".into());
        }
        if trimmed.len() > 32 {
            return Err("is too long to be a mobile number".into());
        }
        let region = (!trimmed.starts_with('+')).then_some(default_region);
        let number = phonenumber::parse(region, trimmed)
            .map_err(|_| "is not a valid mobile number".to_string())?;
        if !phonenumber::is_valid(&number) {
            return Err("is not a possible number in its region".into());
        }
        Ok(Self(
            number.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }

    /// Rebuilds a number that was validated before it was stored.
    pub(crate) fn from_trusted(e164: String) -> Self {
        Self(e164)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The region (ISO 3166) the number belongs to, when its country code tells one.
    pub(crate) fn region(&self) -> Option<phonenumber::country::Id> {
        phonenumber::parse(None, &self.0)
            .ok()
            .and_then(|number| number.country().id())
    }
}

impl fmt::Display for MobileNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `c` shows nothing: white space, or a default-ignorable code point (zero-width
/// spaces and joiners, the byte-order mark, the Mongolian vowel separator, fillers, variation
/// selectors, tags), per Unicode's DerivedCoreProperties.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// `input` without the invisible characters at either end, so that text made only of them
/// (a name of zero-width spaces) counts as empty.
pub(crate) fn trim_invisible(input: &str) -> &str {
    input.trim_matches(is_invisible)
}

/// The rule for names people give things (users, chatrooms): trimmed of invisible characters,
/// 1 to `max_chars` characters, no control characters.
pub(crate) fn parse_display_name(input: &str, max_chars: usize) -> Result<String, String> {
    let trimmed = trim_invisible(input);
    match trimmed.chars().count() {
        0 => Err("must not be empty".into()),
        n if n > max_chars => Err(format!("must be at most {max_chars} characters")),
        _ if trimmed.chars().any(char::is_control) => {
            Err("must not contain control characters".into())
        }
        _ => Ok(trimmed.to_owned()),
    }
}

/// A display name: 1 to 100 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserName(String);

impl UserName {
    pub(crate) const MAX_CHARS: usize = 100;

    pub(crate) fn parse(input: &str) -> Result<Self, String> {
        parse_display_name(input, Self::MAX_CHARS).map(Self)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// The plan a user is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Basic,
    Pro,
}

impl Tier {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Pro => "pro",
        }
    }
}

/// A stored user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub mobile_number: MobileNumber,
    pub name: Option<String>,
    /// Argon2id PHC string; `None` for an OTP-only account.
    pub password_hash: Option<String>,
    pub tier: Tier,
    /// Disabled by an admin: no token works and no sign-in succeeds.
    pub disabled: bool,
    /// Holds the admin role (granted on the command line).
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl User {
    pub(crate) fn has_password(&self) -> bool {
        self.password_hash.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_invisible_characters_are_empty() {
        for invisible in [
            "\u{200B}",
            "\u{FEFF}\u{FEFF}",
            "\u{180E}",
            " \u{200B}\u{2060} ",
        ] {
            assert_eq!(
                parse_display_name(invisible, 100),
                Err("must not be empty".into())
            );
        }
        assert_eq!(
            parse_display_name("\u{200B} Trip \u{FEFF}", 100),
            Ok("Trip".into())
        );
        // Joiners inside an emoji sequence stay.
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
        assert_eq!(parse_display_name(family, 100), Ok(family.into()));
    }

    const IN: phonenumber::country::Id = phonenumber::country::Id::IN;

    #[test]
    fn numbers_are_normalised_to_e164() {
        for input in [
            "+91 98765 43210",
            "98765-43210",
            "(987) 654-3210",
            "+919876543210",
        ] {
            assert_eq!(
                MobileNumber::parse(input, IN).map(|n| n.0),
                Ok("+919876543210".to_string()),
                "{input}"
            );
        }
        assert_eq!(
            MobileNumber::parse("+1 415 555 2671", IN).map(|n| n.0),
            Ok("+14155552671".to_string())
        );
    }

    #[test]
    fn numbers_know_their_region() {
        use phonenumber::country::Id;
        for (input, region) in [
            ("+919876543210", Id::IN),
            ("+16502530001", Id::US),
            ("+447400123456", Id::GB),
            ("+14165550123", Id::CA),
        ] {
            let number = MobileNumber::parse(input, IN).expect(input);
            assert_eq!(number.region(), Some(region), "{input}");
            let stored = MobileNumber::from_trusted(number.as_str().to_owned());
            assert_eq!(stored.region(), Some(region), "{input}");
        }
    }

    #[test]
    fn impossible_numbers_are_refused() {
        for input in [
            "",
            "   ",
            "12",
            "+999 123",
            "hello",
            "+91 12345",
            &"9".repeat(40),
        ] {
            assert!(MobileNumber::parse(input, IN).is_err(), "{input:?}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(UserName::parse("  Asha ").map(|n| n.0), Ok("Asha".into()));
        assert!(UserName::parse("   ").is_err());
        assert!(UserName::parse(&"x".repeat(101)).is_err());
        assert!(UserName::parse(&"é".repeat(100)).is_ok());
        assert!(UserName::parse("a\u{0}b").is_err());
    }
}
