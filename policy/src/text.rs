//! Bounded echoes of untrusted text in messages.
//!
//! Pod authors control annotation keys and values, and mutating admission sees a pod before the
//! apiserver validates its size, so an error that repeats its input could be made megabytes
//! long and copied into every reply and log. Every message that quotes input goes through
//! these helpers: at most [`MAX_NAMED`] items are named, each cut to [`MAX_ECHO`] bytes with an
//! ellipsis, and the rest are counted ("… and 299995 more").

use std::fmt::Write as _;

/// Longest piece of input quoted in a message, in bytes (before the ellipsis).
pub const MAX_ECHO: usize = 64;
/// Most items of one kind named in a message; the rest are counted.
pub const MAX_NAMED: usize = 5;
/// The mark left where text was cut.
pub const ELLIPSIS: char = '…';

/// `s` cut to at most `max` bytes on a character boundary, with [`ELLIPSIS`] appended when
/// anything was cut.
#[must_use]
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + ELLIPSIS.len_utf8());
    out.push_str(&s[..cut]);
    out.push(ELLIPSIS);
    out
}

/// Cuts `s` in place to at most `max` bytes on a character boundary, ending with
/// [`ELLIPSIS`] (the result, ellipsis included, never exceeds `max` when `max` ≥ 3).
pub fn truncate(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max.saturating_sub(ELLIPSIS.len_utf8());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push(ELLIPSIS);
}

/// `s` cut to [`MAX_ECHO`] bytes, for quoting input.
#[must_use]
pub fn echo(s: &str) -> String {
    clip(s, MAX_ECHO)
}

/// Joins at most `max_items` items (each cut to `max_each` bytes) with `", "`, then
/// `" … and N more"` for the rest. The item count must be known (`ExactSizeIterator`) so the
/// rest is counted without being formatted.
#[must_use]
pub fn list<I, S>(items: I, max_items: usize, max_each: usize) -> String
where
    I: IntoIterator<Item = S>,
    I::IntoIter: ExactSizeIterator,
    S: AsRef<str>,
{
    let items = items.into_iter();
    let total = items.len();
    let mut out = String::new();
    for (i, item) in items.take(max_items).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&clip(item.as_ref(), max_each));
    }
    if total > max_items {
        let _ = write!(out, " {ELLIPSIS} and {} more", total - max_items);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_character_boundaries() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
        assert_eq!(clip("éé", 3), "é…", "never splits a character");
        let mut s = "x".repeat(10);
        truncate(&mut s, 6);
        assert_eq!(s, "xxx…");
        assert!(s.len() <= 6);
        let mut s = "ééé".to_owned();
        truncate(&mut s, 5);
        assert_eq!(s, "é…");
    }

    #[test]
    fn lists_name_a_few_and_count_the_rest() {
        let items: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
        assert_eq!(list(&items, 3, 64), "k0, k1, k2 … and 997 more");
        assert_eq!(list(["a", "b"], 3, 64), "a, b");
        assert_eq!(list(["long"], 3, 2), "lo…");
        assert_eq!(list(Vec::<&str>::new(), 3, 2), "");
    }
}
