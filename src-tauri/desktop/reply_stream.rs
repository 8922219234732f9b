//! A reply's text on its way to the window: the engine's pieces go through the model's reply
//! parser, so reasoning (`<think>…</think>` and the like, docs/tools-and-thinking.md) arrives as
//! thinking, apart from the answer, and is never shown or saved as answer text.

use crate::engine::tools::{ReplyParser, ReplyPart, ToolCall};

/// Text parsed but not sent yet.
pub struct ReplyBatch {
    parser: ReplyParser,
    text: String,
    thinking: String,
    tokens: u32,
    /// Tool calls parsed so far: sent with the reply's end, never as text.
    calls: Vec<ToolCall>,
}

impl ReplyBatch {
    pub fn new(parser: ReplyParser) -> Self {
        ReplyBatch { parser, text: String::new(), thinking: String::new(), tokens: 0, calls: Vec::new() }
    }

    /// One generated token's text.
    pub fn push(&mut self, piece: &str) {
        self.tokens += 1;
        let parts = self.parser.push(piece);
        self.add(parts);
    }

    /// The end of the reply: what the parser still held back (a tag that never completed).
    pub fn finish(&mut self) {
        let parts = self.parser.finish();
        self.add(parts);
    }

    fn add(&mut self, parts: Vec<ReplyPart>) {
        for part in parts {
            match part {
                ReplyPart::Content(t) => self.text.push_str(&t),
                ReplyPart::Thinking(t) => self.thinking.push_str(&t),
                ReplyPart::ToolCall(call) => self.calls.push(call),
            }
        }
    }

    /// Whether there is anything to send (tokens held back by the parser count: the window's
    /// token rate stays right even while a tag is undecided).
    pub fn pending(&self) -> bool {
        self.tokens > 0 || !self.text.is_empty() || !self.thinking.is_empty()
    }

    /// The tool calls of the reply (at its end).
    pub fn take_calls(&mut self) -> Vec<ToolCall> {
        std::mem::take(&mut self.calls)
    }

    /// Answer text, thinking text and the number of tokens since the last call.
    pub fn take(&mut self) -> (String, String, u32) {
        (std::mem::take(&mut self.text), std::mem::take(&mut self.thinking), std::mem::take(&mut self.tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thinking_parser(keep: bool) -> ReplyParser {
        ReplyParser::new(Some((("<think>", "</think>"), false, keep)), None)
    }

    /// Feeds `pieces`, taking a batch after each; returns all answer and thinking text.
    fn run(parser: ReplyParser, pieces: &[&str]) -> (String, String, u32) {
        let mut batch = ReplyBatch::new(parser);
        let (mut text, mut thinking, mut tokens) = (String::new(), String::new(), 0);
        let mut collect = |b: &mut ReplyBatch| {
            let (t, th, n) = b.take();
            text.push_str(&t);
            thinking.push_str(&th);
            tokens += n;
        };
        for p in pieces {
            batch.push(p);
            collect(&mut batch);
        }
        batch.finish();
        collect(&mut batch);
        (text, thinking, tokens)
    }

    #[test]
    fn thinking_goes_apart_from_the_answer_even_when_tags_are_cut() {
        let pieces = ["<th", "ink>", "The user", " greets.", "</thi", "nk>", "\n\nHello", "!"];
        let (text, thinking, tokens) = run(thinking_parser(true), &pieces);
        assert_eq!(text, "Hello!");
        assert_eq!(thinking, "The user greets.");
        assert_eq!(tokens, pieces.len() as u32, "every token counts, also those inside tags");
    }

    #[test]
    fn think_off_drops_the_reasoning_and_plain_models_pass_everything() {
        let (text, thinking, _) = run(thinking_parser(false), &["<think>", "hmm", "</think>", "Hi"]);
        assert_eq!((text.as_str(), thinking.as_str()), ("Hi", ""));
        let (text, thinking, _) = run(ReplyParser::plain(), &["<think>", "x", "</think>", "Hi"]);
        assert_eq!((text.as_str(), thinking.as_str()), ("<think>x</think>Hi", ""), "a model without think tags keeps its text as it wrote it");
    }

    #[test]
    fn a_tag_that_never_closes_is_released_at_the_end() {
        let (text, thinking, _) = run(thinking_parser(true), &["Answer: 2 <", "th"]);
        assert_eq!(thinking, "");
        assert_eq!(text, "Answer: 2 <th");
    }
}
