//! The text rule of contract v1: what an id, a dimension or any other free string may contain.
//!
//! Ids and dimensions become Kafka keys, warehouse partitions' values, dashboard terms and log fields.
//! A value that looks like another (`cdn-a` and `cdn-a `), that reorders what an operator reads
//! (U+202E RIGHT-TO-LEFT OVERRIDE), or that breaks a line-oriented reader (a newline) is refused:
//!
//! - no control character anywhere: C0 (U+0000–U+001F), DEL (U+007F), C1 (U+0080–U+009F), the line
//!   and paragraph separators (U+2028, U+2029), the bidirectional controls (U+061C, U+200E,
//!   U+200F, U+202A–U+202E, U+2066–U+2069) and the invisible characters that make look-alikes
//!   (U+200B ZERO WIDTH SPACE, U+2060 WORD JOINER, U+FEFF ZERO WIDTH NO-BREAK SPACE, the byte-order
//!   mark; the zero-width joiners U+200C and U+200D are kept, several scripts need them);
//! - no whitespace at either end (Unicode `White_Space`), which also refuses a value made only of
//!   whitespace.
//!
//! Whitespace inside a value (`Samsung Galaxy S24`) is fine. The JSON Schema states the same rule as
//! a `pattern` built from [`FORBIDDEN`] and [`EDGE_WHITESPACE`] (a test checks that the two agree).
//!
//! ```
//! use qoe_schemas::text::{text_problem, TextProblem};
//!
//! assert_eq!(text_problem("cdn-a"), None);
//! assert_eq!(text_problem("Galaxy S24"), None);
//! assert_eq!(text_problem("   "), Some(TextProblem::EdgeWhitespace(' ')));
//! assert_eq!(text_problem("room\n1"), Some(TextProblem::Control('\n')));
//! assert_eq!(text_problem("abc\u{202e}def"), Some(TextProblem::Control('\u{202e}')));
//! ```

/// Characters refused anywhere in a text, as inclusive ranges.
pub const FORBIDDEN: &[(char, char)] = &[
    ('\u{0000}', '\u{001F}'),
    ('\u{007F}', '\u{009F}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{200B}', '\u{200B}'),
    ('\u{200E}', '\u{200F}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2060}'),
    ('\u{2066}', '\u{2069}'),
    ('\u{FEFF}', '\u{FEFF}'),
];

/// Characters refused at either end of a text (beyond [`FORBIDDEN`]), as inclusive ranges: Unicode
/// `White_Space`.
pub const EDGE_WHITESPACE: &[(char, char)] = &[
    ('\u{0009}', '\u{000D}'),
    ('\u{0020}', '\u{0020}'),
    ('\u{0085}', '\u{0085}'),
    ('\u{00A0}', '\u{00A0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200A}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202F}', '\u{202F}'),
    ('\u{205F}', '\u{205F}'),
    ('\u{3000}', '\u{3000}'),
];

/// What is wrong with a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextProblem {
    /// A control, separator, bidirectional-control or invisible character.
    Control(char),
    /// Whitespace at the start or the end (a blank value starts with whitespace).
    EdgeWhitespace(char),
}

impl TextProblem {
    /// The problem as an error message's middle, with the character's code point:
    /// `contains the control character U+000A`. `text` is the value the problem was found in.
    pub fn describe(self, text: &str) -> String {
        match self {
            TextProblem::Control(c) => format!("contains the control character U+{:04X}", c as u32),
            TextProblem::EdgeWhitespace(_) if text.chars().all(is_edge_whitespace) => "must not be blank".to_string(),
            TextProblem::EdgeWhitespace(c) => {
                format!("must not start or end with whitespace (U+{:04X})", c as u32)
            }
        }
    }
}

fn in_ranges(c: char, ranges: &[(char, char)]) -> bool {
    ranges.iter().any(|&(low, high)| (low..=high).contains(&c))
}

/// Whether `c` is refused anywhere in a text.
pub fn is_forbidden(c: char) -> bool {
    in_ranges(c, FORBIDDEN)
}

/// Whether `c` is refused at the ends of a text.
pub fn is_edge_whitespace(c: char) -> bool {
    in_ranges(c, EDGE_WHITESPACE)
}

/// The first problem of `text` under the rule above, or `None` when it is fine. The empty text has
/// no problem here (the length rule refuses it).
pub fn text_problem(text: &str) -> Option<TextProblem> {
    let bytes = text.as_bytes();
    // The common case, printable ASCII with no space at either end, without decoding characters.
    if bytes.iter().all(|byte| (0x20..0x7F).contains(byte)) {
        let edge = [bytes.first(), bytes.last()]
            .into_iter()
            .flatten()
            .find(|byte| **byte == b' ');
        return edge.map(|_| TextProblem::EdgeWhitespace(' '));
    }
    if let Some(c) = text.chars().find(|c| is_forbidden(*c)) {
        return Some(TextProblem::Control(c));
    }
    [text.chars().next(), text.chars().next_back()]
        .into_iter()
        .flatten()
        .find(|c| is_edge_whitespace(*c))
        .map(TextProblem::EdgeWhitespace)
}

/// The rule as an ECMA-262 regular expression for JSON Schema's `pattern`: one character that is
/// neither forbidden nor whitespace, optionally followed by any allowed characters and a last one
/// that is not whitespace.
pub fn json_schema_pattern() -> String {
    let class = |ranges: &[&[(char, char)]]| {
        let mut class = String::from("[^");
        for &(low, high) in ranges.iter().flat_map(|ranges| ranges.iter()) {
            class.push_str(&format!("\\u{:04X}", low as u32));
            if high != low {
                class.push_str(&format!("-\\u{:04X}", high as u32));
            }
        }
        class.push(']');
        class
    };
    let inner = class(&[FORBIDDEN]);
    let edge = class(&[FORBIDDEN, EDGE_WHITESPACE]);
    format!("^{edge}({inner}*{edge})?$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_shortcut_agrees_with_the_full_check() {
        for byte in 0u8..0x80 {
            for text in [
                format!("{}", byte as char),
                format!("a{}b", byte as char),
                format!("{}ab", byte as char),
                format!("ab{}", byte as char),
            ] {
                let full = text
                    .chars()
                    .find(|c| is_forbidden(*c))
                    .map(TextProblem::Control)
                    .or_else(|| {
                        [text.chars().next(), text.chars().next_back()]
                            .into_iter()
                            .flatten()
                            .find(|c| is_edge_whitespace(*c))
                            .map(TextProblem::EdgeWhitespace)
                    });
                assert_eq!(text_problem(&text), full, "{text:?}");
            }
        }
    }

    #[test]
    fn messages_name_the_code_point() {
        let problem = text_problem("a\u{202e}b").unwrap();
        assert_eq!(problem.describe("a\u{202e}b"), "contains the control character U+202E");
        assert_eq!(text_problem("   ").unwrap().describe("   "), "must not be blank");
        assert_eq!(
            text_problem("cdn-a ").unwrap().describe("cdn-a "),
            "must not start or end with whitespace (U+0020)"
        );
    }
}
