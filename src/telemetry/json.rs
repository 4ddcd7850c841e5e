//! The JSON lines of `LOG_FORMAT=json`, written straight into the line.
//!
//! The shape is tracing-subscriber's JSON format with `flatten_event(true)`,
//! `with_current_span(true)` and `with_span_list(false)`, as log collectors already parse it:
//!
//! ```json
//! {"timestamp":"…","level":"INFO","message":"request finished","status":200,"latency_ms":0.41,
//!  "target":"gemchat::http::observe","span":{"method":"GET","route":"/user/me","request_id":"…","user_id":"…","name":"request"}}
//! ```
//!
//! That format builds a map for each event and, to write the span, parses the span's fields
//! back from JSON; recording a field on a span (the user id, once the token checks out) parses
//! and writes them all again. Here a span's fields are kept as the members of a JSON object,
//! without braces, and a recorded field is appended: every line is written once, in order, with
//! no allocation but the span's own text (about 20 allocations per request fewer).

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each event as one JSON line (see the module's documentation).
#[derive(Debug, Default)]
pub(super) struct JsonLines;

/// Formats a span's fields as the members of a JSON object, without the braces.
#[derive(Debug, Default)]
pub(super) struct JsonMembers;

impl<S> FormatEvent<S, JsonMembers> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonMembers>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A record of the `log` crate arrives as an event of target `log`; its own target and
        // level are in fields, which this puts back.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", meta.level())?;
        let mut members = Members::new(&mut writer, true);
        event.record(&mut members);
        members.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, meta.target())?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            writer.write_str(",\"span\":{")?;
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<JsonMembers>>()
                && !fields.fields.is_empty()
            {
                writer.write_str(&fields.fields)?;
                writer.write_char(',')?;
            }
            writer.write_str("\"name\":")?;
            write_string(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

impl<'writer> FormatFields<'writer> for JsonMembers {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        in_one_write(&mut writer, false, |members| fields.record(members))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let comma = !current.fields.is_empty();
        in_one_write(&mut current.fields, comma, |members| fields.record(members))
    }
}

thread_local! {
    /// Where a span's fields are written before they are copied to the span in one piece.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Writes the members `record` visits to `out` in one write, so a span's text is allocated
/// once at its size rather than grown piece by piece.
fn in_one_write(
    out: &mut dyn fmt::Write,
    comma: bool,
    record: impl FnOnce(&mut Members<'_>),
) -> fmt::Result {
    SCRATCH.with(|scratch| {
        // A field whose formatting logs with a span of its own comes back here: that one is
        // written piece by piece.
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            let mut members = Members::new(out, comma);
            record(&mut members);
            return members.result;
        };
        scratch.clear();
        let mut members = Members::new(&mut *scratch, comma);
        record(&mut members);
        members.result?;
        out.write_str(&scratch)
    })
}

/// Writes each field it visits as a JSON member, `"name":value`, separated by commas.
struct Members<'w> {
    out: &'w mut dyn fmt::Write,
    /// Whether the next member needs a comma before it.
    comma: bool,
    result: fmt::Result,
}

impl<'w> Members<'w> {
    fn new(out: &'w mut dyn fmt::Write, comma: bool) -> Self {
        Self {
            out,
            comma,
            result: Ok(()),
        }
    }

    /// Writes the member's name and colon, then the value with `value`; `None` skips the field.
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // The `log` crate's metadata, already used by the line's level and target.
        if name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = (|| {
            if self.comma {
                self.out.write_char(',')?;
            }
            write_string(self.out, name)?;
            self.out.write_char(':')?;
            value(self.out)
        })();
        self.comma = true;
    }
}

impl Visit for Members<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: they are null, as serde_json writes them.
        self.member(field, |out| {
            if value.is_finite() {
                write!(out, "{value}")
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| write_string(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// Writes `value` as a JSON string.
fn write_string(out: &mut dyn fmt::Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(value)?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string, as serde_json does: quotes,
/// backslashes and control characters (so no value can break a line or forge a field).
struct Escaped<'w>(&'w mut dyn fmt::Write);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut start = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..0x20 => "",
                _ => continue,
            };
            self.0.write_str(&text[start..at])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            start = at + 1;
        }
        self.0.write_str(&text[start..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// The lines a subscriber wrote, kept for the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            lines.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|_| line.into()))
                .collect()
        }
    }

    /// Runs `log` under a subscriber that writes with these formatters, and returns the lines.
    fn logged(log: impl FnOnce()) -> (Vec<serde_json::Value>, String) {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .fmt_fields(JsonMembers)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let raw =
            String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(PoisonError::into_inner))
                .into_owned();
        (captured.lines(), raw)
    }

    #[test]
    fn a_line_carries_the_event_its_span_and_the_fields_recorded_later() {
        let (lines, _) = logged(|| {
            let span = tracing::info_span!(
                "request",
                method = "GET",
                route = "/user/me",
                user_id = tracing::field::Empty,
            );
            let _entered = span.enter();
            span.record("user_id", tracing::field::display("u-1"));
            tracing::info!(
                status = 200_u16,
                latency_ms = 0.25,
                ok = true,
                "request finished"
            );
            tracing::warn!(delta = -3_i64, "outside the request");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request finished");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 0.25);
        assert_eq!(line["ok"], true);
        assert_eq!(line["target"], module_path!());
        assert_eq!(
            line["span"],
            serde_json::json!({"method": "GET", "route": "/user/me", "user_id": "u-1", "name": "request"})
        );
        let stamp = line["timestamp"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "an RFC 3339 timestamp: {stamp}"
        );
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["delta"], -3);
        assert_eq!(lines[1]["span"]["name"], "request");
    }

    #[test]
    fn no_value_can_break_the_line_or_forge_a_field() {
        let hostile = "a\"b\\c\nd\re\tf\u{1b}[31mg\u{0}h\u{7f}é😀";
        let (lines, raw) = logged(|| {
            tracing::info!(text = hostile, debug = ?hostile, shown = %hostile, "{hostile}");
            tracing::info!(nan = f64::NAN, infinite = f64::INFINITY, "not numbers");
            let span = tracing::info_span!("outer", note = hostile);
            let _entered = span.enter();
            tracing::error!("inside");
        });
        assert_eq!(raw.lines().count(), 3, "one line each: {raw}");
        assert_eq!(lines[0]["text"], hostile);
        assert_eq!(lines[0]["debug"], format!("{hostile:?}"));
        assert_eq!(lines[0]["shown"], hostile);
        assert_eq!(lines[0]["message"], hostile);
        assert_eq!(lines[1]["nan"], serde_json::Value::Null);
        assert_eq!(lines[1]["infinite"], serde_json::Value::Null);
        assert_eq!(lines[2]["span"]["note"], hostile);
        assert!(!raw.contains('\u{1b}'), "no terminal escapes get through");
    }

    #[test]
    fn a_span_without_fields_still_names_itself() {
        let (lines, _) = logged(|| {
            let span = tracing::info_span!("quiet");
            let _entered = span.enter();
            tracing::info!("hello");
        });
        assert_eq!(lines[0]["span"], serde_json::json!({"name": "quiet"}));
    }
}
