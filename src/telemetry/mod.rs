//! Logging set-up: `LOG_FORMAT=pretty|json` (pretty on a terminal by default), filtered by
//! `RUST_LOG` (default `info`).
//!
//! On a terminal every line is written as it is logged. Otherwise (a file, a pipe to a log
//! collector) lines of level info and below are gathered in one buffer and written together, at
//! least every [`FLUSH_EVERY`] or once [`FLUSH_AT`] bytes wait, as nginx's `access_log ...
//! buffer= flush=` does: a line per request then costs a copy, not a `write` under stdout's lock
//! that the other runtime threads queue behind. A warning or an error is written at once, after
//! whatever waits, so order is kept and nothing that matters waits; a process that is killed
//! loses at most the info lines of its last [`FLUSH_EVERY`]. [`flush`] writes what waits (the
//! binary calls it before it exits).

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

mod json;

/// The longest an info line waits to be written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// How much may wait before it is written at once.
pub const FLUSH_AT: usize = 32 * 1024;

/// Installs the global subscriber; later calls are no-ops (tests build many apps).
pub(crate) fn init(format: Option<LogFormat>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stdout().is_terminal();
    let format = format.unwrap_or(if terminal {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let output = if terminal {
        Output::Direct
    } else {
        Output::Buffered(buffered())
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .fmt_fields(json::JsonMembers)
            .event_format(json::JsonLines)
            .try_init(),
    };
}

/// Writes the log lines that wait. Call before the process exits.
pub fn flush() {
    if let Some(buffer) = BUFFER.get() {
        buffer.flush(buffer.pending());
    }
}

static BUFFER: OnceLock<LineBuffer> = OnceLock::new();

/// The process's one buffer, with the thread that writes it out every [`FLUSH_EVERY`].
fn buffered() -> &'static LineBuffer {
    BUFFER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    flush();
                }
            });
        if let Err(err) = spawned {
            // Lines still get out: each time the buffer fills, and at every warning.
            let _ = writeln!(std::io::stderr(), "cannot start the log flusher: {err}");
        }
        LineBuffer::new(Box::new(std::io::stdout()))
    })
}

/// Where the subscriber writes: stdout as it comes, or through the buffer.
#[derive(Clone, Copy)]
enum Output {
    Direct,
    Buffered(&'static LineBuffer),
}

impl<'a> MakeWriter<'a> for Output {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        self.line(true)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        self.line(*meta.level() <= Level::WARN)
    }
}

impl Output {
    fn line(self, urgent: bool) -> Line {
        match self {
            Self::Direct => Line::Direct,
            Self::Buffered(buffer) => Line::Buffered { buffer, urgent },
        }
    }
}

/// One log line on its way out.
enum Line {
    Direct,
    Buffered {
        buffer: &'static LineBuffer,
        urgent: bool,
    },
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match *self {
            Self::Direct => std::io::stdout().lock().write(bytes),
            Self::Buffered { buffer, urgent } => {
                buffer.push(bytes, urgent);
                Ok(bytes.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Direct => std::io::stdout().lock().flush(),
            Self::Buffered { .. } => Ok(()),
        }
    }
}

/// Lines waiting to be written, and where they go. Writers take `pending` only to copy a line
/// in; whoever holds `out` writes, so lines go out in the order they were taken.
struct LineBuffer {
    pending: Mutex<Vec<u8>>,
    out: Mutex<Out>,
}

/// The destination, and the buffer written from while `pending` fills again.
struct Out {
    spare: Vec<u8>,
    to: Box<dyn Write + Send>,
}

impl LineBuffer {
    fn new(to: Box<dyn Write + Send>) -> Self {
        Self {
            pending: Mutex::new(Vec::with_capacity(FLUSH_AT * 2)),
            out: Mutex::new(Out {
                spare: Vec::with_capacity(FLUSH_AT * 2),
                to,
            }),
        }
    }

    fn pending(&self) -> MutexGuard<'_, Vec<u8>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies a line in; writes everything out at once if the line is `urgent` or enough waits.
    fn push(&self, line: &[u8], urgent: bool) {
        let mut pending = self.pending();
        pending.extend_from_slice(line);
        if urgent || pending.len() >= FLUSH_AT {
            self.flush(pending);
        }
    }

    /// Writes out what `pending` holds, letting other threads append again before the write.
    fn flush(&self, mut pending: MutexGuard<'_, Vec<u8>>) {
        if pending.is_empty() {
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let Out { spare, to } = &mut *out;
        std::mem::swap(&mut *pending, spare);
        drop(pending);
        // Nowhere to report a failed log write; the lines are dropped, as a full disk would.
        let _ = to.write_all(spare).and_then(|()| to.flush());
        spare.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A destination the test can read.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into()
        }
    }

    #[test]
    fn info_lines_wait_and_a_warning_takes_them_out_in_order() {
        let written = Shared::default();
        let buffer = LineBuffer::new(Box::new(written.clone()));
        buffer.push(b"one\n", false);
        buffer.push(b"two\n", false);
        assert_eq!(written.text(), "");
        buffer.push(b"warning\n", true);
        assert_eq!(written.text(), "one\ntwo\nwarning\n");
        buffer.push(b"three\n", false);
        buffer.flush(buffer.pending());
        assert_eq!(written.text(), "one\ntwo\nwarning\nthree\n");
    }

    #[test]
    fn a_full_buffer_is_written_at_once() {
        let written = Shared::default();
        let buffer = LineBuffer::new(Box::new(written.clone()));
        let line = [b'x'; 1024];
        for _ in 0..FLUSH_AT / line.len() - 1 {
            buffer.push(&line, false);
        }
        assert_eq!(written.text().len(), 0);
        buffer.push(&line, false);
        assert_eq!(written.text().len(), FLUSH_AT / line.len() * line.len());
    }

    #[test]
    fn lines_of_many_threads_arrive_whole() {
        let written = Shared::default();
        let buffer = Arc::new(LineBuffer::new(Box::new(written.clone())));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let buffer = Arc::clone(&buffer);
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        buffer.push(format!("{t}:{i}\n").as_bytes(), i % 500 == 0);
                    }
                })
            })
            .collect();
        for thread in threads {
            assert!(thread.join().is_ok());
        }
        buffer.flush(buffer.pending());
        let text = written.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8000);
        for t in 0..4 {
            let own: Vec<u32> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("{t}:")))
                .filter_map(|i| i.parse().ok())
                .collect();
            assert_eq!(own, (0..2000).collect::<Vec<u32>>(), "thread {t}");
        }
    }
}
