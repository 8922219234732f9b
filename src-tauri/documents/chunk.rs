//! Cuts sections into chunks of about `size` characters that overlap by about `overlap`, so a
//! fact that straddles a cut is whole in one of them. Cuts fall at paragraph, line, sentence or
//! word ends when one is near; each chunk keeps its section's location.

use super::extract::Section;

/// Characters per chunk: about 250 tokens of English, well inside any embedding model's context.
pub const CHUNK_CHARS: usize = 1000;
pub const OVERLAP_CHARS: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub location: String,
    pub text: String,
}

pub fn chunk_sections(sections: &[Section], size: usize, overlap: usize) -> Vec<Chunk> {
    let mut out = Vec::new();
    for s in sections {
        for text in chunk_text(&s.text, size, overlap) {
            out.push(Chunk { location: s.location.clone(), text });
        }
    }
    out
}

/// Pieces of `text` of at most `size` characters (more only for a single longer word), each
/// starting about `overlap` characters before the previous one ended.
pub fn chunk_text(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = size.max(16);
    let overlap = overlap.min(size / 2);
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let hard_end = (start + size).min(chars.len());
        let end = if hard_end == chars.len() { hard_end } else { soft_cut(&chars, start + size / 2, hard_end) };
        let piece: String = chars[start..end].iter().collect();
        if !piece.trim().is_empty() {
            out.push(piece.trim().to_string());
        }
        if end == chars.len() {
            break;
        }
        // Back by the overlap, to the start of a word.
        let mut next = end.saturating_sub(overlap).max(start + 1);
        while next > start + 1 && next < end && !chars[next - 1].is_whitespace() {
            next -= 1;
        }
        start = next;
    }
    out
}

/// The best place to cut in `lo..hi`: after a blank line, else a line end, else a sentence end,
/// else a space; `hi` when there is none.
fn soft_cut(chars: &[char], lo: usize, hi: usize) -> usize {
    let window = lo..hi;
    let find = |pred: &dyn Fn(usize) -> bool| window.clone().rev().find(|&i| pred(i));
    find(&|i| chars[i] == '\n' && i > 0 && chars[i - 1] == '\n')
        .or_else(|| find(&|i| chars[i] == '\n'))
        .or_else(|| find(&|i| chars[i].is_whitespace() && i > 0 && matches!(chars[i - 1], '.' | '!' | '?')))
        .or_else(|| find(&|i| chars[i].is_whitespace()))
        .map_or(hi, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(chunk_text("  one fact.  ", 100, 20), vec!["one fact.".to_string()]);
        assert!(chunk_text("   ", 100, 20).is_empty());
    }

    #[test]
    fn chunks_are_bounded_overlap_and_cover_everything() {
        let words: Vec<String> = (0..400).map(|i| format!("w{i}")).collect();
        let text = words.join(" ");
        let chunks = chunk_text(&text, 200, 50);
        assert!(chunks.len() > 5);
        assert!(chunks.iter().all(|c| c.chars().count() <= 200));
        for w in &words {
            assert!(chunks.iter().any(|c| c.split_whitespace().any(|x| x == w)), "{w} lost");
        }
        // Consecutive chunks share words, and no chunk starts inside a word.
        for pair in chunks.windows(2) {
            let first: Vec<&str> = pair[0].split_whitespace().collect();
            assert!(first.contains(&pair[1].split_whitespace().next().unwrap()));
        }
    }

    #[test]
    fn cuts_prefer_paragraph_ends() {
        let text = format!("{}\n\n{}", "a ".repeat(60).trim(), "b ".repeat(60).trim());
        let chunks = chunk_text(&text, 150, 10);
        assert!(chunks[0].chars().all(|c| c == 'a' || c == ' '), "{:?}", chunks[0]);
    }
}
