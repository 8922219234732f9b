//! Pure text plumbing of the token stream: turning token bytes into whole UTF-8 characters and
//! holding back text that may be the start of a stop sequence. No llama.cpp here, so every edge
//! case is unit-tested without a model. Nothing in this file may emit part of a character or
//! any part of a stop sequence.

/// Collects token bytes and releases only whole UTF-8 characters: a character may span tokens
/// (byte-fallback tokens of emoji and CJK), so incomplete trailing bytes wait for the next token.
/// Bytes that can never form a character become U+FFFD rather than being dropped.
#[derive(Debug, Default)]
pub struct Utf8Buffer {
    pending: Vec<u8>,
}

impl Utf8Buffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bytes` and returns the whole characters now available (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let good = start + e.valid_up_to();
                    // SAFETY-free: from_utf8 said these bytes are valid.
                    out.push_str(std::str::from_utf8(&self.pending[start..good]).unwrap());
                    match e.error_len() {
                        // Invalid bytes in the middle: they will never become a character.
                        Some(n) => {
                            out.push('\u{FFFD}');
                            start = good + n;
                        }
                        // An incomplete character at the end: keep it for the next token.
                        None => {
                            start = good;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }

    /// Releases whatever is left at the end of a generation (an incomplete character as U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Finds stop sequences across token boundaries. Text that could still be the start of a stop
/// sequence is held back until it either completes one (then it and everything after it are
/// dropped) or cannot any more (then it is released).
#[derive(Debug)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What [`StopMatcher::push`] allows out.
#[derive(Debug, PartialEq, Eq)]
pub struct StopOutput {
    /// Text safe to emit now.
    pub emit: String,
    /// A stop sequence was found: the generation ends, `emit` is the text before it.
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        let stops = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        Self { stops, held: String::new() }
    }

    pub fn push(&mut self, text: &str) -> StopOutput {
        if self.stops.is_empty() {
            return StopOutput { emit: text.to_owned(), stopped: false };
        }
        self.held.push_str(text);
        // The earliest stop wins: text after it was never meant to be seen.
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let emit = self.held[..at].to_owned();
            self.held.clear();
            return StopOutput { emit, stopped: true };
        }
        let keep = self.longest_partial_suffix();
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_owned();
        self.held.drain(..cut);
        StopOutput { emit, stopped: false }
    }

    /// The held text when the generation ends without a stop sequence (EOS, length).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length in bytes of the longest suffix of `held` that is a proper prefix of a stop sequence
    /// (always on a character boundary, since stop sequences are valid UTF-8).
    fn longest_partial_suffix(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            let max = stop.len().saturating_sub(1).min(self.held.len());
            for n in (best + 1..=max).rev() {
                let start = self.held.len() - n;
                if self.held.is_char_boundary(start) && stop.starts_with(&self.held[start..]) {
                    best = n;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_whole_characters_pass_through() {
        let mut b = Utf8Buffer::new();
        assert_eq!(b.push(b"hello "), "hello ");
        assert_eq!(b.push("héllo".as_bytes()), "héllo");
        assert_eq!(b.finish(), "");
    }

    #[test]
    fn utf8_character_split_across_tokens_waits() {
        let emoji = "🦀".as_bytes(); // 4 bytes
        let mut b = Utf8Buffer::new();
        assert_eq!(b.push(&emoji[..1]), "");
        assert_eq!(b.push(&emoji[1..3]), "");
        assert_eq!(b.push(&[emoji[3], b'x']), "🦀x");
        let cjk = "漢字".as_bytes();
        assert_eq!(b.push(&cjk[..4]), "漢");
        assert_eq!(b.push(&cjk[4..]), "字");
    }

    #[test]
    fn utf8_invalid_bytes_become_replacement_not_stuck() {
        let mut b = Utf8Buffer::new();
        assert_eq!(b.push(&[b'a', 0xff, b'b']), "a\u{FFFD}b");
        // An incomplete character left at the end is released as U+FFFD by finish().
        assert_eq!(b.push(&[0xe6, 0xbc]), "");
        assert_eq!(b.finish(), "\u{FFFD}");
        assert_eq!(b.finish(), "");
    }

    #[test]
    fn utf8_any_split_of_mixed_text_reassembles() {
        let text = "a🦀漢é\u{1F600}z";
        let bytes = text.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut b = Utf8Buffer::new();
                let mut out = String::new();
                for part in [&bytes[..i], &bytes[i..j], &bytes[j..]] {
                    out.push_str(&b.push(part));
                }
                out.push_str(&b.finish());
                assert_eq!(out, text, "split at {i},{j}");
            }
        }
    }

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let o = m.push(p);
            out.push_str(&o.emit);
            if o.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_within_one_piece() {
        assert_eq!(run(&["END"], &["abcENDdef"]), ("abc".into(), true));
    }

    #[test]
    fn stop_across_pieces_never_emitted() {
        assert_eq!(run(&["<|end|>"], &["hi <|", "en", "d|> tail"]), ("hi ".into(), true));
    }

    #[test]
    fn held_text_released_when_it_cannot_be_a_stop() {
        let stops = vec!["STOP".to_string()];
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("abST"), StopOutput { emit: "ab".into(), stopped: false });
        assert_eq!(m.push("x"), StopOutput { emit: "STx".into(), stopped: false });
        assert_eq!(m.push("ST"), StopOutput { emit: "".into(), stopped: false });
        assert_eq!(m.finish(), "ST");
    }

    #[test]
    fn overlapping_prefixes() {
        assert_eq!(run(&["aab"], &["a", "a", "a", "b", "zzz"]), ("a".into(), true));
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(run(&["world", "lo"], &["hello world"]), ("hel".into(), true));
        assert_eq!(run(&["\n\n", "User:"], &["ok\nUs", "er: x"]), ("ok\n".into(), true));
    }

    #[test]
    fn no_stops_or_empty_stop_passes_everything() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&[""], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn multibyte_stop_and_text() {
        assert_eq!(run(&["漢字"], &["é漢", "字x"]), ("é".into(), true));
        assert_eq!(run(&["🦀!"], &["a🦀", "b"]), ("a🦀b".into(), false));
    }
}
