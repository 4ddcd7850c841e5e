//! What an uploaded file is, read from its bytes as they arrive: its type (from magic bytes,
//! never from the client's word), whether text is really text, and what the file will cost in
//! a model's context. Pure: fed chunk by chunk, so a file is never held whole.

use std::fmt;

/// The types an upload may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileType {
    Png,
    Jpeg,
    Webp,
    Heic,
    Heif,
    Pdf,
    Text,
}

impl FileType {
    /// Every accepted type, for messages and the OpenAPI document.
    pub(crate) const ALL: [FileType; 7] = [
        Self::Png,
        Self::Jpeg,
        Self::Webp,
        Self::Heic,
        Self::Heif,
        Self::Pdf,
        Self::Text,
    ];

    pub(crate) fn mime_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
            Self::Heic => "image/heic",
            Self::Heif => "image/heif",
            Self::Pdf => "application/pdf",
            Self::Text => "text/plain",
        }
    }

    /// What people call it, for messages.
    fn described(self) -> &'static str {
        match self {
            Self::Png => "a PNG image",
            Self::Jpeg => "a JPEG image",
            Self::Webp => "a WebP image",
            Self::Heic | Self::Heif => "a HEIF image",
            Self::Pdf => "a PDF",
            Self::Text => "plain text",
        }
    }

    /// Whether a client that declared `declared` sent this type: `application/octet-stream`
    /// (or nothing) declares nothing; HEIC is a kind of HEIF.
    fn agrees_with(self, declared: &str) -> bool {
        match declared {
            "" | "application/octet-stream" => true,
            "image/heic" | "image/heif" => matches!(self, Self::Heic | Self::Heif),
            "image/jpg" | "image/pjpeg" => self == Self::Jpeg,
            other => other == self.mime_type(),
        }
    }
}

/// Why a file is refused for its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Empty.
    Empty,
    /// Not one of the accepted types (`what` names it where it is known: markup, binary).
    Unsupported { what: &'static str },
    /// The content is `found` but the client said `declared`.
    Contradicts { found: FileType, declared: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let accepted: Vec<&str> = FileType::ALL.iter().map(|t| t.mime_type()).collect();
        match self {
            Self::Empty => write!(f, "The file is empty."),
            Self::Unsupported { what } => write!(
                f,
                "The file is {what}, which is not accepted; accepted types are {}.",
                accepted.join(", ")
            ),
            Self::Contradicts { found, declared } => write!(
                f,
                "The file was sent as {declared} but its content is {}.",
                found.described()
            ),
        }
    }
}

/// Bytes kept from the start of a file: enough for every signature and an image's size.
const HEAD_BYTES: usize = 64 * 1024;
/// Bytes read before the type is decided (markup may follow some white space).
const SNIFF_BYTES: usize = 1024;

/// Tokens one image tile costs (Gemini: an image up to 384 px either way is one tile; larger
/// ones are cut into 768 px tiles).
const TOKENS_PER_TILE: u32 = 258;
/// The most a file is taken to cost: a model's whole context (Gemini's is a million tokens);
/// an absurd header (a PNG claiming a billion pixels) must not count past it.
const MAX_FILE_TOKENS: u32 = 1 << 20;
/// Tokens one PDF page costs.
const TOKENS_PER_PAGE: u32 = 258;
/// An image whose size cannot be read is taken as four tiles.
const UNKNOWN_IMAGE_TILES: u32 = 4;
/// A PDF whose pages cannot be counted (compressed object streams) is taken as a page per
/// this many bytes.
const PDF_BYTES_PER_PAGE: u64 = 100 * 1024;

/// Reads a file as it arrives: [`Sniffer::feed`] every chunk, then [`Sniffer::finish`].
#[derive(Debug, Default)]
pub(crate) struct Sniffer {
    head: Vec<u8>,
    size: u64,
    /// Set once the head is long enough to tell.
    kind: Option<FileType>,
    /// Text: the bytes of a UTF-8 character cut by the chunk's end.
    carry: Vec<u8>,
    /// Text: characters seen.
    chars: u64,
    /// PDF: pages seen, and the last bytes of the previous chunk (a marker may straddle two).
    pages: u32,
    tail: Vec<u8>,
    refused: Option<Refusal>,
}

/// A file that passed: its type and what it costs in a model's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sniffed {
    pub(crate) kind: FileType,
    pub(crate) size: u64,
    pub(crate) tokens: u32,
}

/// The marker of a PDF page object (`/Type /Page`, not `/Pages`), with or without the space.
const PAGE_MARKERS: [&[u8]; 2] = [b"/Type /Page", b"/Type/Page"];

impl Sniffer {
    /// Bytes read so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Takes the next chunk. `Err` as soon as the content is known to be refused.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        if let Some(refused) = &self.refused {
            return Err(refused.clone());
        }
        self.size += chunk.len() as u64;
        if self.head.len() < HEAD_BYTES {
            let take = chunk.len().min(HEAD_BYTES - self.head.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        if self.kind.is_none() {
            // Markup is told by up to a kilobyte of the start.
            if self.head.len() < SNIFF_BYTES {
                return Ok(());
            }
            return self.decide();
        }
        self.read_body(chunk)
    }

    /// Classifies the head, then reads it as the start of the body.
    fn decide(&mut self) -> Result<(), Refusal> {
        let kind = self
            .classify_head()
            .inspect_err(|r| self.refused = Some(r.clone()))?;
        self.kind = Some(kind);
        let seen = std::mem::take(&mut self.head);
        let result = self.read_body(&seen);
        self.head = seen;
        result
    }

    /// The type of the head's content.
    fn classify_head(&self) -> Result<FileType, Refusal> {
        signature(&self.head).map_or_else(|| text_or_not(&self.head), Ok)
    }

    fn read_body(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        match self.kind {
            Some(FileType::Text) => {
                let result = self.read_text(chunk);
                if let Err(refused) = &result {
                    self.refused = Some(refused.clone());
                }
                result
            }
            Some(FileType::Pdf) => {
                self.count_pages(chunk);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn read_text(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(chunk);
        let (valid, rest) = match std::str::from_utf8(&bytes) {
            Ok(text) => (text, &[][..]),
            // A character cut by the chunk's end: its first bytes wait for the next chunk.
            Err(e) if e.error_len().is_none() => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                (std::str::from_utf8(valid).unwrap_or_default(), rest)
            }
            Err(_) => {
                return Err(Refusal::Unsupported {
                    what: "binary data",
                });
            }
        };
        if valid.chars().any(is_binary_control) {
            return Err(Refusal::Unsupported {
                what: "binary data",
            });
        }
        self.chars += valid.chars().count() as u64;
        self.carry = rest.to_vec();
        Ok(())
    }

    fn count_pages(&mut self, chunk: &[u8]) {
        let mut window = std::mem::take(&mut self.tail);
        let from = window.len();
        window.extend_from_slice(chunk);
        for marker in PAGE_MARKERS {
            let mut at = 0;
            while let Some(found) = find(&window[at..], marker) {
                let end = at + found + marker.len();
                // Counted once: a marker that ends in the tail was counted with the chunk before.
                let is_page = window.get(end).is_some_and(|&b| b != b's');
                if end > from && is_page {
                    self.pages += 1;
                }
                at = end;
            }
        }
        let keep = window.len().min(PAGE_MARKERS[0].len());
        self.tail = window[window.len() - keep..].to_vec();
    }

    /// Judges the whole file against what the client `declared` (its part's Content-Type).
    pub(crate) fn finish(mut self, declared: Option<&str>) -> Result<Sniffed, Refusal> {
        if let Some(refused) = self.refused.take() {
            return Err(refused);
        }
        if self.size == 0 {
            return Err(Refusal::Empty);
        }
        if self.kind.is_none() {
            self.decide()?;
        }
        let kind = self.kind.unwrap_or(FileType::Text);
        if kind == FileType::Text && !self.carry.is_empty() {
            return Err(Refusal::Unsupported {
                what: "binary data",
            });
        }
        let declared = declared
            .map(|d| {
                d.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if !kind.agrees_with(&declared) {
            return Err(Refusal::Contradicts {
                found: kind,
                declared,
            });
        }
        Ok(Sniffed {
            kind,
            size: self.size,
            tokens: self.tokens(kind).min(MAX_FILE_TOKENS),
        })
    }

    fn tokens(&self, kind: FileType) -> u32 {
        match kind {
            FileType::Text => u32::try_from(self.chars.div_ceil(4))
                .unwrap_or(u32::MAX)
                .max(1),
            FileType::Pdf => {
                let pages = if self.pages > 0 {
                    self.pages
                } else {
                    u32::try_from(self.size.div_ceil(PDF_BYTES_PER_PAGE)).unwrap_or(u32::MAX)
                };
                pages.saturating_mul(TOKENS_PER_PAGE)
            }
            _ => image_tiles(&self.head).saturating_mul(TOKENS_PER_TILE),
        }
    }
}

/// The type a binary signature at the start of `head` names.
fn signature(head: &[u8]) -> Option<FileType> {
    let brand = head.get(8..12);
    match head {
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(FileType::Png),
        [0xFF, 0xD8, 0xFF, ..] => Some(FileType::Jpeg),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some(FileType::Webp),
        [b'%', b'P', b'D', b'F', b'-', ..] => Some(FileType::Pdf),
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => match brand? {
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" => Some(FileType::Heic),
            b"mif1" | b"msf1" | b"heif" => Some(FileType::Heif),
            _ => None,
        },
        _ => None,
    }
}

/// Text, unless it is binary or markup a browser would run (HTML, SVG, XML: script carriers).
fn text_or_not(head: &[u8]) -> Result<FileType, Refusal> {
    let start = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = start.trim_ascii_start();
    if is_markup(start) {
        return Err(Refusal::Unsupported {
            what: "HTML, SVG or XML markup",
        });
    }
    // Binary bytes anywhere in the head (the rest is checked as it arrives).
    let text_so_far = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => {
            return Err(Refusal::Unsupported {
                what: "binary data",
            });
        }
    };
    if text_so_far.chars().any(is_binary_control) {
        return Err(Refusal::Unsupported {
            what: "binary data",
        });
    }
    Ok(FileType::Text)
}

/// The markup openings a browser sniffs as HTML (WHATWG MIME Sniffing, 7.1), plus SVG.
fn is_markup(start: &[u8]) -> bool {
    const TAGS: [&[u8]; 20] = [
        b"<!doctype html",
        b"<html",
        b"<head",
        b"<script",
        b"<iframe",
        b"<h1",
        b"<div",
        b"<font",
        b"<table",
        b"<a",
        b"<style",
        b"<title",
        b"<b",
        b"<body",
        b"<br",
        b"<p",
        b"<!--",
        b"<?xml",
        b"<svg",
        b"<object",
    ];
    TAGS.iter().any(|tag| {
        start.len() >= tag.len()
            && start[..tag.len()].eq_ignore_ascii_case(tag)
            && start.get(tag.len()).is_none_or(|&b| {
                b == b' ' || b == b'>' || b.is_ascii_whitespace() || *tag == b"<!--"
            })
    })
}

/// The bytes that do not occur in text (WHATWG MIME Sniffing's "binary data bytes"): C0
/// controls other than tab, line feed, form feed, carriage return and escape.
fn is_binary_control(c: char) -> bool {
    matches!(c as u32, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F)
}

/// Tiles of the image in `head` (its size is in its first bytes for every accepted format).
fn image_tiles(head: &[u8]) -> u32 {
    match imagesize::blob_size(head) {
        Ok(size) if size.width <= 384 && size.height <= 384 => 1,
        Ok(size) => {
            let across = size.width.div_ceil(768);
            let down = size.height.div_ceil(768);
            u32::try_from(across.saturating_mul(down))
                .unwrap_or(u32::MAX)
                .max(1)
        }
        Err(_) => UNKNOWN_IMAGE_TILES,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A file name as kept for display: its last path component, without control characters,
/// trimmed. `Err` says why it cannot be kept (empty, or longer than 255 characters).
pub(crate) fn clean_name(name: &str) -> Result<String, &'static str> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    match cleaned.chars().count() {
        0 => Err("must name the file"),
        n if n > 255 => Err("must be at most 255 characters"),
        _ if cleaned == "." || cleaned == ".." => Err("must name the file"),
        _ => Ok(cleaned.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_1X1: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0,
        0x07, 0xD0, 0, 0, 0x03, 0xE8, 8, 2, 0, 0, 0,
    ];

    fn sniff(chunks: &[&[u8]], declared: Option<&str>) -> Result<Sniffed, Refusal> {
        let mut sniffer = Sniffer::default();
        for chunk in chunks {
            sniffer.feed(chunk)?;
        }
        sniffer.finish(declared)
    }

    #[test]
    fn types_are_read_from_the_bytes() {
        let png = sniff(&[PNG_1X1], Some("image/png")).expect("accepted");
        assert_eq!(png.kind, FileType::Png);
        // 2000 x 1000 px: 3 x 2 tiles.
        assert_eq!(png.tokens, 6 * TOKENS_PER_TILE);
        assert_eq!(
            sniff(&[b"\xFF\xD8\xFF\xE0rest of a jpeg"], None)
                .expect("accepted")
                .kind,
            FileType::Jpeg
        );
        assert_eq!(
            sniff(&[b"RIFF\x10\0\0\0WEBPVP8 "], None)
                .expect("accepted")
                .kind,
            FileType::Webp
        );
        assert_eq!(
            sniff(&[b"\0\0\0\x18ftypheic\0\0\0\0"], Some("image/heif"))
                .expect("accepted")
                .kind,
            FileType::Heic
        );
        assert_eq!(
            sniff(&[b"\0\0\0\x18ftypmif1\0\0\0\0"], None)
                .expect("accepted")
                .kind,
            FileType::Heif
        );
        let text = sniff(
            &[b"Monsoon ", b"travel notes\n"],
            Some("text/plain; charset=utf-8"),
        );
        assert_eq!(
            text.expect("accepted"),
            Sniffed {
                kind: FileType::Text,
                size: 21,
                tokens: 6
            }
        );
    }

    #[test]
    fn an_absurd_image_size_costs_at_most_a_whole_context() {
        let mut huge = PNG_1X1.to_vec();
        huge[16..24].copy_from_slice(&[0x7F, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF]);
        let sniffed = sniff(&[&huge], None).expect("accepted");
        assert_eq!(sniffed.tokens, MAX_FILE_TOKENS);
    }

    #[test]
    fn a_declared_type_that_contradicts_the_content_is_refused() {
        let pdf_as_png = sniff(&[b"%PDF-1.7\n"], Some("image/png"));
        assert_eq!(
            pdf_as_png,
            Err(Refusal::Contradicts {
                found: FileType::Pdf,
                declared: "image/png".into()
            })
        );
        assert!(matches!(
            sniff(&[b"just words"], Some("image/png")),
            Err(Refusal::Contradicts { .. })
        ));
        assert!(matches!(
            sniff(&[PNG_1X1], Some("text/plain")),
            Err(Refusal::Contradicts { .. })
        ));
    }

    #[test]
    fn markup_binary_and_empty_files_are_refused() {
        for markup in [
            &b"<!DOCTYPE html><p>hi"[..],
            b"  <html>",
            b"\xEF\xBB\xBF<svg xmlns=\"http://www.w3.org/2000/svg\"><script>",
            b"<?xml version=\"1.0\"?><svg/>",
            b"<SCRIPT>alert(1)</SCRIPT>",
        ] {
            assert_eq!(
                sniff(&[markup], Some("text/plain")),
                Err(Refusal::Unsupported {
                    what: "HTML, SVG or XML markup"
                }),
                "{}",
                String::from_utf8_lossy(markup)
            );
        }
        assert!(sniff(&[b"<3 you"], None).is_ok(), "a < alone is text");
        assert_eq!(
            sniff(&[b"ab\0cd"], None),
            Err(Refusal::Unsupported {
                what: "binary data"
            })
        );
        assert_eq!(
            sniff(&[b"ok", b"\xFF\xFE"], None),
            Err(Refusal::Unsupported {
                what: "binary data"
            })
        );
        assert_eq!(sniff(&[], None), Err(Refusal::Empty));
    }

    #[test]
    fn text_cut_inside_a_character_is_still_text_and_counted_once() {
        let text = "héllo wörld".as_bytes();
        let (a, b) = text.split_at(2); // inside "é"
        let sniffed = sniff(&[&[b'x'; 20], a, b], None).expect("accepted");
        assert_eq!(sniffed.kind, FileType::Text);
        assert_eq!(sniffed.tokens, (20 + 11_u32).div_ceil(4));
        assert!(
            sniff(&[&[b'x'; 20], a], None).is_err(),
            "a file may not end mid-character"
        );
    }

    #[test]
    fn pdf_pages_are_counted_across_chunks() {
        // Past the first kilobyte, so the type is decided on the first chunk and the marker
        // cut between the two is found through the kept tail.
        let first = [
            &b"%PDF-1.7\n"[..],
            &[b' '; 2000],
            b"1 0 obj << /Type /Pages >> 2 0 obj << /Type /Pa",
        ]
        .concat();
        let sniffed = sniff(
            &[&first, b"ge >> 3 0 obj <</Type/Page>>"],
            Some("application/pdf"),
        );
        let sniffed = sniffed.expect("accepted");
        assert_eq!(sniffed.tokens, 2 * TOKENS_PER_PAGE);
    }

    #[test]
    fn names_keep_their_last_component_without_control_characters() {
        assert_eq!(
            clean_name("../../etc/passwd").expect("a usable name"),
            "passwd"
        );
        assert_eq!(
            clean_name("C:\\Users\\me\\photo.png").expect("a usable name"),
            "photo.png"
        );
        assert_eq!(
            clean_name("a\u{0}b\u{7}c.txt").expect("a usable name"),
            "abc.txt"
        );
        assert!(clean_name("../").is_err());
        assert!(clean_name("..").is_err());
        assert!(clean_name(" \u{1} ").is_err());
        assert!(clean_name(&"x".repeat(256)).is_err());
        assert_eq!(
            clean_name(&"é".repeat(255))
                .expect("a usable name")
                .chars()
                .count(),
            255
        );
    }
}
