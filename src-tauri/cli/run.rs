//! `airlock run MODEL [PROMPT]`: a one-shot answer when a prompt is given or stdin is piped,
//! otherwise an interactive chat like `ollama run` (`"""` for multi-line input, `/bye`, `/clear`,
//! `/set parameter NAME VALUE`, `/set think`, `/set nothink`, `/show info`; Ctrl-C stops the
//! reply, not the program). The reply goes to stdout, a thinking model's reasoning dimmed before
//! it (on a terminal; plain text otherwise); `--verbose` statistics and notes go to stderr.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::core::Core;
use crate::engine::chat::{gpu_layers, PreparedModel, RequestSettings};
use crate::engine::protocol::GenerationStats;
use crate::engine::supervisor::StreamEvent;
use crate::engine::template::ChatMessage;
use crate::engine::tools::{ReplyPart, Think};

pub struct RunArgs {
    pub model: String,
    pub prompt: Vec<String>,
    pub verbose: bool,
    pub keep_alive: Option<Duration>,
    pub think: Option<Think>,
}

pub fn run(core: &Core, args: RunArgs) -> Result<()> {
    let model = core.prepare(&args.model)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    // Ctrl-C stops the reply in progress; the chat goes on.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let mut session = Session { core, model, messages: Vec::new(), settings: RequestSettings { keep_alive: args.keep_alive, think: args.think, ..Default::default() }, verbose: args.verbose, interrupted };

    let stdin = io::stdin();
    let mut prompt = args.prompt.join(" ");
    if !stdin.is_terminal() {
        let mut piped = String::new();
        stdin.lock().read_to_string(&mut piped)?;
        prompt = [prompt, piped].iter().filter(|s| !s.trim().is_empty()).cloned().collect::<Vec<_>>().join("\n");
    }
    if !prompt.trim().is_empty() || !stdin.is_terminal() {
        return session.reply(prompt);
    }
    session.interactive()
}

struct Session<'a> {
    core: &'a Core,
    model: PreparedModel,
    messages: Vec<ChatMessage>,
    settings: RequestSettings,
    verbose: bool,
    interrupted: Arc<AtomicBool>,
}

impl Session<'_> {
    fn interactive(&mut self) -> Result<()> {
        // Load before the first prompt, so the first answer starts at once.
        self.core.engine().preload(&self.model, &self.settings)?;
        let stdin = io::stdin();
        let mut lines = stdin.lock().lines();
        loop {
            eprint!(">>> ");
            io::stderr().flush()?;
            let Some(line) = lines.next() else { eprintln!(); return Ok(()) };
            let line = line?;
            let mut text = line.trim().to_string();
            if let Some(rest) = text.strip_prefix("\"\"\"") {
                // Multi-line input until a line ending with """.
                let mut buf = rest.to_string();
                while !buf.trim_end().ends_with("\"\"\"") {
                    eprint!("... ");
                    io::stderr().flush()?;
                    let Some(next) = lines.next() else { break };
                    buf.push('\n');
                    buf.push_str(&next?);
                }
                text = buf.trim_end().trim_end_matches("\"\"\"").trim().to_string();
            }
            match text.as_str() {
                "" => continue,
                "/bye" | "/exit" => return Ok(()),
                "/clear" => {
                    self.messages.clear();
                    eprintln!("Cleared session context");
                }
                "/?" | "/help" => eprintln!("{}", HELP),
                "/show info" => print!("{}", super::render_details(&self.core.details(&self.core.store.resolve(&self.model.name)?))),
                cmd if cmd.starts_with("/set parameter ") => match set_parameter(&mut self.settings, &cmd["/set parameter ".len()..]) {
                    Ok(msg) => eprintln!("{msg}"),
                    Err(e) => eprintln!("Error: {e}"),
                },
                "/set think" => {
                    self.settings.think = Some(Think::On);
                    eprintln!("Set 'think' mode.");
                }
                "/set nothink" => {
                    self.settings.think = Some(Think::Off);
                    eprintln!("Set 'nothink' mode.");
                }
                cmd if cmd.starts_with("/set think ") => match Think::from_level(cmd["/set think ".len()..].trim()) {
                    Ok(level) => {
                        eprintln!("Set 'think' mode to {:?}.", cmd["/set think ".len()..].trim());
                        self.settings.think = Some(level);
                    }
                    Err(e) => eprintln!("Error: {e}"),
                },
                cmd if cmd.starts_with("/set system ") => {
                    self.messages.retain(|m| m.role != "system");
                    self.messages.insert(0, ChatMessage::new("system", cmd["/set system ".len()..].trim()));
                    eprintln!("Set system message.");
                }
                cmd if cmd.starts_with('/') => eprintln!("Unknown command '{cmd}'. Type /? for help"),
                _ => {
                    if let Err(e) = self.reply(text) {
                        eprintln!("Error: {e:#}");
                    }
                }
            }
        }
    }

    /// Sends `text` as the next user message and streams the reply to stdout.
    fn reply(&mut self, text: String) -> Result<()> {
        let started = Instant::now();
        self.messages.push(ChatMessage::new("user", text));
        self.interrupted.store(false, Ordering::SeqCst);
        let stream = match self.core.engine().chat(&self.model, &self.messages, self.settings.clone()) {
            Ok(s) => s,
            Err(e) => {
                self.messages.pop();
                return Err(e.into());
            }
        };
        if stream.dropped_messages > 0 {
            eprintln!("(the {} oldest messages no longer fit in the context and were left out)", stream.dropped_messages);
        }
        let load = stream.load_duration;
        let runs_on = stream.runs_on;
        let prompt = stream.prompt;
        let mut generation = stream.generation;
        let mut parser = stream.parser;
        let mut answer = ChatMessage::new("assistant", "");
        let mut out = io::stdout().lock();
        let mut shown = Shown { terminal: io::stdout().is_terminal(), thinking: false };
        let mut cancelled = false;
        let stats = loop {
            if !cancelled && self.interrupted.load(Ordering::SeqCst) {
                generation.cancel();
                cancelled = true;
            }
            match generation.next_event_timeout(Duration::from_millis(50)) {
                None => continue,
                Some(StreamEvent::Piece(p)) => {
                    for part in parser.push(&p) {
                        shown.write(&mut out, &mut answer, part)?;
                    }
                    out.flush()?;
                }
                Some(StreamEvent::Done(stats)) => {
                    for part in parser.finish() {
                        shown.write(&mut out, &mut answer, part)?;
                    }
                    shown.end_thinking(&mut out)?;
                    break stats;
                }
                Some(StreamEvent::Error(e)) => {
                    writeln!(out)?;
                    self.messages.pop();
                    return Err(e.into());
                }
            }
        };
        writeln!(out)?;
        self.messages.push(answer);
        if self.verbose {
            eprintln!("rendered prompt:      {}", serde_json::to_string(&prompt).unwrap_or_default());
            eprint!("{}", verbose_stats(started.elapsed(), load, &stats));
            eprintln!("processor:            {runs_on}");
        }
        Ok(())
    }
}

/// `/set parameter NAME VALUE`: changes the session's settings, as Ollama's REPL does.
fn set_parameter(settings: &mut RequestSettings, args: &str) -> Result<String> {
    let (name, value) = args.trim().split_once(' ').map(|(n, v)| (n, v.trim())).unwrap_or((args.trim(), ""));
    let o = &mut settings.options;
    let bad = || anyhow::anyhow!("invalid value {value:?} for {name}");
    match name {
        "temperature" => o.temperature = Some(value.parse().map_err(|_| bad())?),
        "top_k" => o.top_k = Some(value.parse().map_err(|_| bad())?),
        "top_p" => o.top_p = Some(value.parse().map_err(|_| bad())?),
        "min_p" => o.min_p = Some(value.parse().map_err(|_| bad())?),
        "repeat_penalty" => o.repeat_penalty = Some(value.parse().map_err(|_| bad())?),
        "repeat_last_n" => o.repeat_last_n = Some(value.parse().map_err(|_| bad())?),
        "presence_penalty" => o.presence_penalty = Some(value.parse().map_err(|_| bad())?),
        "frequency_penalty" => o.frequency_penalty = Some(value.parse().map_err(|_| bad())?),
        "seed" => o.seed = Some(value.parse().map_err(|_| bad())?),
        "num_predict" => o.num_predict = Some(value.parse().map_err(|_| bad())?),
        "num_ctx" => settings.num_ctx = Some(value.parse().map_err(|_| bad())?),
        // -1 (any negative value): as many layers as fit, as in requests.
        "num_gpu" => settings.num_gpu = gpu_layers(value.parse().map_err(|_| bad())?),
        "stop" => o.stop.extend(value.split_whitespace().map(str::to_string)),
        "draft_max" | "draft_num_predict" => o.draft_max = Some(value.parse().map_err(|_| bad())?),
        // A draft model for speculative decoding; "none" turns the model's own off.
        "draft" => settings.draft = Some(if value == "none" { String::new() } else { value.to_string() }),
        _ => bail!("unknown parameter '{name}'"),
    }
    Ok(format!("Set parameter '{name}' to '{value}'"))
}

/// Writes reply parts: thinking dimmed (ANSI faint on a terminal) and set apart from the
/// answer, which is kept for the next turn.
struct Shown {
    terminal: bool,
    thinking: bool,
}

impl Shown {
    fn write(&mut self, out: &mut impl Write, answer: &mut ChatMessage, part: ReplyPart) -> io::Result<()> {
        match part {
            ReplyPart::Thinking(t) => {
                if !self.thinking {
                    self.thinking = true;
                    out.write_all(if self.terminal { b"\x1b[2mThinking...\n" } else { b"Thinking...\n" })?;
                }
                out.write_all(t.as_bytes())?;
                answer.thinking.get_or_insert_with(String::new).push_str(&t);
            }
            ReplyPart::Content(t) => {
                self.end_thinking(out)?;
                out.write_all(t.as_bytes())?;
                answer.content.push_str(&t);
            }
            ReplyPart::ToolCall(c) => {
                self.end_thinking(out)?;
                writeln!(out, "{}", serde_json::json!({ "name": c.function.name, "arguments": c.function.arguments }))?;
                answer.tool_calls.push(c);
            }
        }
        Ok(())
    }

    fn end_thinking(&mut self, out: &mut impl Write) -> io::Result<()> {
        if std::mem::take(&mut self.thinking) {
            out.write_all(if self.terminal { b"\n...done thinking.\x1b[0m\n\n" } else { b"\n...done thinking.\n\n" })?;
        }
        Ok(())
    }
}

/// Ollama's `--verbose` lines.
pub fn verbose_stats(total: Duration, load: Duration, s: &GenerationStats) -> String {
    let rate = |n: u32, ns: u64| if ns == 0 { 0.0 } else { n as f64 / (ns as f64 / 1e9) };
    format!(
        "total duration:       {:?}\nload duration:        {:?}\nprompt eval count:    {} token(s)\nprompt eval duration: {:?}\nprompt eval rate:     {:.2} tokens/s\neval count:           {} token(s)\neval duration:        {:?}\neval rate:            {:.2} tokens/s\n",
        total,
        load,
        s.prompt_tokens,
        Duration::from_nanos(s.prompt_eval_ns),
        rate(s.prompt_tokens - s.prompt_cached_tokens, s.prompt_eval_ns),
        s.eval_tokens,
        Duration::from_nanos(s.eval_ns),
        rate(s.eval_tokens, s.eval_ns),
    ) + &s.draft_acceptance().map_or(String::new(), |a| format!("draft acceptance:     {:.1}% ({}/{} drafted tokens)\n", a * 100.0, s.draft_accepted, s.draft_tokens))
}

const HELP: &str = "Available Commands:
  /set parameter NAME VALUE   Set a parameter (temperature, top_k, top_p, min_p, repeat_penalty,
                              repeat_last_n, seed, num_predict, num_ctx, num_gpu, stop, draft,
                              draft_max)
  /set system TEXT            Set the system message
  /set think [low|medium|high] Let a thinking model reason first (shown dimmed)
  /set nothink                Turn thinking off
  /show info                  Show details for this model
  /clear                      Clear the session context
  /bye                        Exit
  /?, /help                   Help for a command

Use \"\"\" to begin a multi-line message; Ctrl-C stops a reply.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_parameter_takes_what_the_docs_list() {
        let mut s = RequestSettings::default();
        assert_eq!(set_parameter(&mut s, "num_gpu 7").unwrap(), "Set parameter 'num_gpu' to '7'");
        assert_eq!(s.num_gpu, Some(7));
        // -1: as many layers as fit, as in requests (README, "GPUs").
        set_parameter(&mut s, "num_gpu -1").unwrap();
        assert_eq!(s.num_gpu, None);
        set_parameter(&mut s, "temperature 0.5").unwrap();
        assert_eq!(s.options.temperature, Some(0.5));
        assert!(set_parameter(&mut s, "num_gpu many").unwrap_err().to_string().contains("invalid value"));
        set_parameter(&mut s, "draft qwen:0.5b").unwrap();
        set_parameter(&mut s, "draft_max 4").unwrap();
        assert_eq!((s.draft.as_deref(), s.options.draft_max), (Some("qwen:0.5b"), Some(4)));
        assert!(set_parameter(&mut s, "mirostat 2").unwrap_err().to_string().contains("unknown parameter"));
    }
}
