//! From a question to the context block of a prompt: the best chunks of the conversation's
//! documents, as many as fit a share of the context, each numbered and named by its file and
//! place, plus the sources the window shows under the reply.

use serde::{Deserialize, Serialize};

use super::catalog::file_name;
use super::index::Hit;
use crate::core::Core;
use crate::engine::chat::PreparedModel;

/// Chunks asked of the search before the budget decides how many go in.
pub const CANDIDATE_CHUNKS: usize = 8;

/// The share of the context the documents may take: a third, leaving the rest for the
/// conversation, the question and the reply.
pub fn context_budget(num_ctx: u32) -> usize {
    num_ctx as usize / 3
}

/// One source under a reply (saved with the message, so it opens after the file changed).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Source {
    /// The number the prompt cites it by: [1], [2], …
    pub n: usize,
    pub file: String,
    pub path: String,
    /// "page 3", a heading, or empty.
    pub location: String,
    /// A short excerpt around the question's words, for the list.
    pub snippet: String,
    /// The whole chunk, for the viewer.
    pub text: String,
}

/// What goes into the prompt, and what the reply shows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Retrieved {
    /// The context block (for the system message), `None` when nothing was found.
    pub context: Option<String>,
    pub sources: Vec<Source>,
    /// Tokens the block takes (by `count`), and the budget it had.
    pub tokens: usize,
    pub budget: usize,
    /// How the tokens were counted: "tokenizer" (the engine's, the model being loaded) or
    /// "estimate" (UTF-8 bytes / 3).
    pub counted_by: &'static str,
}

const HEADER: &str = "Excerpts from the user's documents follow, each numbered and named by its file and place. Use them to answer when they are relevant, cite them by number like [1], and say so when they do not hold the answer instead of guessing.";

/// A safe token estimate without the model's tokenizer: one token per 3 bytes of UTF-8. English
/// takes about 4 bytes per token and CJK 3, so this over-counts rather than overfills.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(3)
}

/// Builds the context block from `hits` (best first) within `budget` tokens as `count` counts
/// them: a chunk that would pass the budget is left out and smaller ones after it may still go
/// in. Numbers follow the order in the block.
pub fn context_block(hits: &[Hit], question: &str, budget: usize, count: &dyn Fn(&str) -> usize) -> (Option<String>, Vec<Source>, usize) {
    let mut used = count(HEADER) + 2;
    let mut block = String::from(HEADER);
    let mut sources = Vec::new();
    for hit in hits {
        let path = hit.path.display().to_string();
        let file = file_name(&path);
        let n = sources.len() + 1;
        let place = if hit.location.is_empty() { file.clone() } else { format!("{file}, {}", hit.location) };
        let entry = format!("\n\n[{n}] {place}\n{}", hit.text.trim());
        let cost = count(&entry);
        if used + cost > budget {
            continue;
        }
        used += cost;
        block.push_str(&entry);
        sources.push(Source { n, file, path, location: hit.location.clone(), snippet: snippet(&hit.text, question), text: hit.text.clone() });
    }
    if sources.is_empty() {
        return (None, sources, 0);
    }
    (Some(block), sources, used)
}

/// About 200 characters of `text` around the first word of `question` it contains (its start
/// when none), whitespace collapsed.
pub fn snippet(text: &str, question: &str) -> String {
    const WIDTH: usize = 200;
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let lower = flat.to_lowercase();
    let at = question
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4)
        .filter_map(|w| lower.find(&w.to_lowercase()))
        .min()
        .unwrap_or(0);
    let chars: Vec<char> = flat.chars().collect();
    // `at` is a byte offset into the lowercased text; near enough in characters for a window.
    let at_char = lower[..at.min(lower.len())].chars().count().min(chars.len());
    let start = at_char.saturating_sub(WIDTH / 3);
    let end = (start + WIDTH).min(chars.len());
    let mut out: String = chars[start..end].iter().collect();
    if start > 0 {
        out.insert(0, '…');
    }
    if end < chars.len() {
        out.push('…');
    }
    out
}

/// Counts tokens with the engine's tokenizer when `model`'s weights are loaded (a chat or an
/// embedding runner of the same file); else [`estimate_tokens`]. Returns the counter and which.
pub fn token_counter<'a>(core: &'a Core, model: &PreparedModel) -> (TokenCounter<'a>, &'static str) {
    let supervisor = &core.engine().supervisor;
    if let Some(loaded) = supervisor.loaded().into_iter().find(|m| m.spec.model_path == model.model_path) {
        let count: TokenCounter<'a> = Box::new(move |text: &str| supervisor.count_tokens(&loaded, text).map(|n| n as usize).unwrap_or_else(|_| estimate_tokens(text)));
        return (count, "tokenizer");
    }
    let count: TokenCounter<'a> = Box::new(estimate_tokens);
    (count, "estimate")
}

pub type TokenCounter<'a> = Box<dyn Fn(&str) -> usize + 'a>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn hit(id: i64, file: &str, location: &str, text: &str) -> Hit {
        Hit { chunk_id: id, path: PathBuf::from(format!("/docs/{file}")), location: location.into(), text: text.into(), score: 1.0 }
    }

    #[test]
    fn the_block_names_each_source_and_respects_the_budget() {
        let hits = vec![
            hit(1, "pump.txt", "", "The coolant pump P-101 is serviced every 90 days."),
            hit(2, "manual.pdf", "page 3", &"long text ".repeat(200)),
            hit(3, "guide.md", "# Parking", "Visitors park in lot C."),
        ];
        let budget = estimate_tokens(HEADER) + 80;
        let (block, sources, used) = context_block(&hits, "When is P-101 serviced?", budget, &estimate_tokens);
        let block = block.unwrap();
        assert!(used <= budget, "{used} > {budget}");
        assert!(estimate_tokens(&block) <= budget);
        // The long chunk does not fit; the smaller one after it does, numbered in block order.
        let names: Vec<(usize, &str)> = sources.iter().map(|s| (s.n, s.file.as_str())).collect();
        assert_eq!(names, [(1, "pump.txt"), (2, "guide.md")]);
        assert!(block.contains("[1] pump.txt\nThe coolant pump P-101"), "{block}");
        assert!(block.contains("[2] guide.md, # Parking\nVisitors park"), "{block}");
        assert!(!block.contains("long text"));
        assert_eq!(sources[1].location, "# Parking");
        assert_eq!(sources[0].path, "/docs/pump.txt");
        assert_eq!(sources[0].text, hits[0].text);

        // Nothing fits, or nothing found: no block at all.
        assert_eq!(context_block(&hits[1..2], "q", budget, &estimate_tokens).0, None);
        assert_eq!(context_block(&[], "q", 10_000, &estimate_tokens).1, vec![]);
    }

    #[test]
    fn the_budget_is_a_third_of_the_context() {
        assert_eq!(context_budget(4096), 1365);
        assert_eq!(context_budget(2048), 682);
        assert!(estimate_tokens("héllo wörld") >= "héllo wörld".split_whitespace().count());
    }

    #[test]
    fn snippets_center_on_the_question() {
        let text = format!("{} The badge office is in building 12. {}", "intro ".repeat(100), "outro ".repeat(100));
        let s = snippet(&text, "Where is the badge office?");
        assert!(s.contains("badge office is in building 12"), "{s}");
        assert!(s.starts_with('…') && s.ends_with('…'));
        assert!(s.chars().count() <= 202);
        assert_eq!(snippet("Short   text\n here.", "nothing matches"), "Short text here.");
    }
}
