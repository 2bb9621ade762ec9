//! The context block put before a prompt, and its token budget.
//!
//! ```text
//! [Context]
//! - preferred_categories: [running, trail, outdoor, +2 more]
//! - price_sensitivity: 0.35
//! [/Context]
//!
//! <the prompt>
//! ```
//!
//! Compact on purpose: one `- name: value` line per feature, numbers
//! rounded to 4 decimals (large and tiny ones in scientific notation), lists
//! cut to their first [`LIST_ITEMS`] items with a count of the rest, text
//! cut to [`TEXT_CHARS`] characters on one line (a value cannot add lines of
//! its own to the prompt).
//!
//! Tokens are estimated, not counted: `ceil(characters / 4)`, the usual
//! rule of thumb for English text under GPT-style BPE tokenizers. It needs
//! no tokenizer and errs on the safe side for numbers and short words,
//! which is most of a feature block. The estimate covers the whole block,
//! including its brackets and the blank line before the prompt.

use crate::model::Value;

const HEADER: &str = "[Context]\n";
const FOOTER: &str = "[/Context]\n\n";
/// Items of a list value shown before `+N more`.
pub const LIST_ITEMS: usize = 5;
/// Characters of a text value (or of one list item) shown before `…`.
pub const TEXT_CHARS: usize = 80;
const ITEM_CHARS: usize = 40;

/// The estimated tokens of `text`: `ceil(chars / 4)`.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// One feature's line in the block.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextLine {
    /// The feature ref this line shows (`group:feature`).
    pub feature: String,
    pub text: String,
}

impl ContextLine {
    pub fn new(feature: &str, name: &str, value: &Value) -> ContextLine {
        ContextLine { feature: feature.to_string(), text: format!("- {}: {}\n", one_line(name), format_value(value)) }
    }
}

/// The block of `lines`, most important first, keeping as many as fit in
/// `max_tokens` by dropping from the end. Answers the block (empty when
/// nothing fits) and how many lines it kept.
pub fn fit_block(lines: &[ContextLine], max_tokens: usize) -> (String, usize) {
    let mut kept = lines.len();
    while kept > 0 {
        let block = render(&lines[..kept]);
        if estimate_tokens(&block) <= max_tokens {
            return (block, kept);
        }
        kept -= 1;
    }
    (String::new(), 0)
}

fn render(lines: &[ContextLine]) -> String {
    let mut block = String::from(HEADER);
    for line in lines {
        block.push_str(&line.text);
    }
    block.push_str(FOOTER);
    block
}

/// A value as shown in the block.
pub fn format_value(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int64(i) => i.to_string(),
        Value::Float64(x) => format_number(*x),
        Value::String(s) => shorten(&one_line(s), TEXT_CHARS),
        Value::Float64List(items) => list(items.iter().map(|x| format_number(*x))),
        Value::StringList(items) => list(items.iter().map(|s| shorten(&one_line(s), ITEM_CHARS))),
    }
}

/// Numbers rounded to 4 decimals, trailing zeros dropped; beyond a million
/// or below a thousandth, 4 significant digits in scientific notation.
pub fn format_number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let magnitude = x.abs();
    if magnitude != 0.0 && !(1e-3..1e6).contains(&magnitude) {
        let text = format!("{x:.3e}");
        let (mantissa, exponent) = text.split_once('e').expect("scientific notation has an exponent");
        return format!("{}e{exponent}", trim_zeros(mantissa));
    }
    let rounded = format!("{x:.4}");
    let trimmed = trim_zeros(&rounded);
    if trimmed == "-0" { "0".into() } else { trimmed.to_string() }
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { text }
}

fn list(items: impl ExactSizeIterator<Item = String>) -> String {
    let total = items.len();
    let mut shown: Vec<String> = items.take(LIST_ITEMS).collect();
    if total > LIST_ITEMS {
        shown.push(format!("+{} more", total - LIST_ITEMS));
    }
    format!("[{}]", shown.join(", "))
}

/// Line breaks and tabs become spaces, runs of spaces one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max_chars - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_compact() {
        for (x, text) in [
            (0.35, "0.35"),
            (188.73456, "188.7346"),
            (42.0, "42"),
            (-0.00001, "-1e-5"),
            (2_912_345_678_901.0, "2.912e12"),
            (1_000_000.0, "1e6"),
            (0.001, "0.001"),
            (-0.00004, "-4e-5"),
            (0.0, "0"),
            (-0.00000001 * 0.0, "0"),
        ] {
            assert_eq!(format_number(x), text, "{x}");
        }
    }

    #[test]
    fn lists_are_cut_to_five_items_with_a_count() {
        let v = Value::StringList(["a", "b", "c", "d", "e", "f", "g"].map(String::from).to_vec());
        assert_eq!(format_value(&v), "[a, b, c, d, e, +2 more]");
        assert_eq!(format_value(&Value::Float64List(vec![1.5, 2.0])), "[1.5, 2]");
        assert_eq!(format_value(&Value::StringList(vec![])), "[]");
    }

    #[test]
    fn text_stays_on_one_line_and_is_cut() {
        assert_eq!(format_value(&Value::String("two\nlines\n- injected: yes".into())), "two lines - injected: yes");
        let long = "x".repeat(100);
        let shown = format_value(&Value::String(long));
        assert_eq!(shown.chars().count(), TEXT_CHARS);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn tokens_are_a_quarter_of_the_characters_rounded_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        // Characters, not bytes: four two-byte letters are one token.
        assert_eq!(estimate_tokens("éééé"), 1);
    }

    #[test]
    fn the_budget_drops_the_least_important_lines_first() {
        let lines = vec![
            ContextLine::new("u:tier", "tier", &Value::String("gold".into())),
            ContextLine::new("u:score", "score", &Value::Float64(0.5)),
            ContextLine::new("u:tenure", "tenure", &Value::Int64(120)),
        ];
        // "[Context]\n" 10 + "- tier: gold\n" 13 + "- score: 0.5\n" 13 + "- tenure: 120\n" 14
        // + "[/Context]\n\n" 12 = 62 characters = 16 tokens; without tenure 48 = 12;
        // with tier alone 35 = 9; the bare brackets alone would be 22 = 6.
        assert_eq!(fit_block(&lines, 16), (render(&lines), 3));
        assert_eq!(fit_block(&lines, 15).1, 2);
        assert_eq!(fit_block(&lines, 12), ("[Context]\n- tier: gold\n- score: 0.5\n[/Context]\n\n".into(), 2));
        assert_eq!(fit_block(&lines, 11).1, 1);
        assert_eq!(fit_block(&lines, 9).1, 1);
        assert_eq!(fit_block(&lines, 8), (String::new(), 0));
        assert_eq!(estimate_tokens(&render(&lines)), 16);
    }
}
