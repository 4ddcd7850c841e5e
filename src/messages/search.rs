//! The search syntax, parsed once for both databases: words (all required), `"quoted
//! phrases"` (words adjacent and in order), and `-word` or `-"phrase"` to exclude. Each storage
//! adapter renders a [`SearchQuery`] in its own full-text language.

/// The most terms a query may hold; the rest are ignored.
const MAX_TERMS: usize = 32;

/// One thing to look for: a single word, or a phrase of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// Lower-case words of letters and digits, in order (one for a plain word).
    pub(crate) words: Vec<String>,
}

/// A parsed search: at least one term to find, any number to exclude.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub(crate) required: Vec<Term>,
    pub(crate) excluded: Vec<Term>,
}

impl SearchQuery {
    /// Parses what a user typed; `None` when it holds no word to find (nothing can match).
    pub fn parse(text: &str) -> Option<Self> {
        let mut query = Self {
            required: Vec::new(),
            excluded: Vec::new(),
        };
        let mut rest = text.trim_start();
        while !rest.is_empty() && query.required.len() + query.excluded.len() < MAX_TERMS {
            let (negated, after_sign) = match rest.strip_prefix('-') {
                Some(after) => (true, after),
                None => (false, rest),
            };
            // A quoted phrase runs to the closing quote (or the end); a bare chunk to the next
            // white space. A chunk of several words ("e-mail") is a phrase too: that is how
            // the text was indexed.
            let (chunk, next) = match after_sign.strip_prefix('"') {
                Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
                None => after_sign
                    .split_once(char::is_whitespace)
                    .unwrap_or((after_sign, "")),
            };
            rest = next.trim_start();
            let words: Vec<String> = chunk
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            if words.is_empty() {
                continue;
            }
            let term = Term { words };
            if negated {
                query.excluded.push(term);
            } else {
                query.required.push(term);
            }
        }
        // Exclusions alone select nothing: there must be a word to find.
        (!query.required.is_empty()).then_some(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(words: &[&str]) -> Term {
        Term {
            words: words.iter().map(|w| (*w).to_owned()).collect(),
        }
    }

    #[test]
    fn words_phrases_and_exclusions() {
        let query = SearchQuery::parse(r#"Goa "beach hut" -rain -"monsoon season" e-mail"#);
        assert_eq!(
            query,
            Some(SearchQuery {
                required: vec![
                    term(&["goa"]),
                    term(&["beach", "hut"]),
                    term(&["e", "mail"])
                ],
                excluded: vec![term(&["rain"]), term(&["monsoon", "season"])],
            })
        );
    }

    #[test]
    fn odd_input_never_fails_to_parse() {
        assert_eq!(SearchQuery::parse("!!! ???"), None);
        assert_eq!(SearchQuery::parse("-"), None);
        assert_eq!(SearchQuery::parse("-rain"), None, "nothing to find");
        assert_eq!(
            SearchQuery::parse(r#""unterminated phrase"#),
            Some(SearchQuery {
                required: vec![term(&["unterminated", "phrase"])],
                excluded: vec![],
            })
        );
        let many = "word ".repeat(100);
        let parsed = SearchQuery::parse(&many);
        assert_eq!(parsed.map(|q| q.required.len()), Some(MAX_TERMS));
    }
}
