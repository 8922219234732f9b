//! The streaming reply parser: pieces of model text in, content / thinking / whole tool calls
//! out. Text that might still become a tag is held back until the next piece decides it; a call
//! is emitted only once its JSON is complete and valid, anything else is passed on as content.

use serde_json::{Map, Value};

use super::{new_call_id, Opener, ToolCall, ToolCallFunction, ToolSyntax};

/// One part of a parsed reply, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyPart {
    Content(String),
    Thinking(String),
    ToolCall(ToolCall),
}

/// Splits a streamed reply. Build it with [`ReplyParser::new`], feed every piece to
/// [`push`](ReplyParser::push) and call [`finish`](ReplyParser::finish) at the end.
#[derive(Debug, Clone)]
pub struct ReplyParser {
    think: Option<ThinkSplitter>,
    /// Thinking is dropped (not shown) when the request turned it off.
    keep_thinking: bool,
    tools: Option<CallScanner>,
}

impl ReplyParser {
    /// A parser that passes everything through as content.
    pub fn plain() -> Self {
        ReplyParser { think: None, keep_thinking: false, tools: None }
    }

    /// `thinking`: the template's think tags, whether the prompt left thinking open, and whether
    /// to keep the reasoning; `tools`: the syntax and the declared function names when calls
    /// are to be parsed.
    pub fn new(thinking: Option<((&str, &str), bool, bool)>, tools: Option<(ToolSyntax, Vec<String>)>) -> Self {
        let (think, keep_thinking) = match thinking {
            Some(((open, close), forced_open, keep)) => (Some(ThinkSplitter::new(open, close, forced_open)), keep),
            None => (None, false),
        };
        ReplyParser { think, keep_thinking, tools: tools.map(|(syntax, names)| CallScanner::new(syntax, names)) }
    }

    /// For a reply a grammar restricts to calls: a call cut off by the token limit is dropped, not
    /// returned as text, since the reply can hold nothing else.
    pub fn calls_only(mut self) -> Self {
        if let Some(s) = &mut self.tools {
            s.calls_only = true;
        }
        self
    }

    /// Also takes a reply that is nothing but an untagged call (`{"name": …, "arguments": …}`, a
    /// list of them, or either in a ```json fence) as calls when each names one of `schemas`'
    /// functions and its arguments validate against that schema, as llama.cpp's Hermes parser
    /// does: small models often drop their family's tags. Such a reply is held until it ends.
    /// Families that write bare JSON already parse it wherever it is.
    pub fn untagged_calls(mut self, schemas: Vec<(String, Value)>) -> Self {
        if let Some(s) = self.tools.as_mut().filter(|s| !s.syntax.openers.iter().any(|o| o.tag_is_json)) {
            s.untagged = Some(schemas);
            s.state = ScanState::WholeReply;
        }
        self
    }

    /// Whether calls are being looked for.
    pub fn parses_tools(&self) -> bool {
        self.tools.is_some()
    }

    pub fn push(&mut self, piece: &str) -> Vec<ReplyPart> {
        let mut out = Vec::new();
        match &mut self.think {
            Some(t) => {
                let parts = t.push(piece);
                self.route(parts, &mut out);
            }
            None => self.content(piece, &mut out),
        }
        out
    }

    pub fn finish(&mut self) -> Vec<ReplyPart> {
        let mut out = Vec::new();
        if let Some(t) = &mut self.think {
            let parts = t.finish();
            self.route(parts, &mut out);
        }
        if let Some(s) = &mut self.tools {
            s.finish(&mut out);
        }
        merge_adjacent(out)
    }

    fn route(&mut self, parts: Vec<(bool, String)>, out: &mut Vec<ReplyPart>) {
        for (thinking, text) in parts {
            if thinking {
                if self.keep_thinking && !text.is_empty() {
                    out.push(ReplyPart::Thinking(text));
                }
            } else {
                self.content(&text, out);
            }
        }
    }

    fn content(&mut self, text: &str, out: &mut Vec<ReplyPart>) {
        match &mut self.tools {
            Some(s) => s.push(text, out),
            None if !text.is_empty() => out.push(ReplyPart::Content(text.to_string())),
            None => {}
        }
    }
}

/// Joins neighbouring parts of the same kind (so a finish yields one content part, not several).
fn merge_adjacent(parts: Vec<ReplyPart>) -> Vec<ReplyPart> {
    let mut out: Vec<ReplyPart> = Vec::with_capacity(parts.len());
    for p in parts {
        match (out.last_mut(), p) {
            (Some(ReplyPart::Content(a)), ReplyPart::Content(b)) => a.push_str(&b),
            (Some(ReplyPart::Thinking(a)), ReplyPart::Thinking(b)) => a.push_str(&b),
            (_, p) => out.push(p),
        }
    }
    out
}

/// Length of the longest proper prefix of `tag` that `buf` ends with (a tag that may be arriving).
fn partial_tag_len(buf: &str, tag: &str) -> usize {
    (1..tag.len()).rev().find(|&k| tag.is_char_boundary(k) && buf.ends_with(&tag[..k])).unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThinkState {
    /// Before anything but whitespace: a think tag may still open.
    Start,
    /// Right after the opening tag: leading whitespace of the thought is dropped.
    ThinkingStart,
    Thinking,
    /// Right after the closing tag: leading whitespace of the answer is dropped.
    AfterThinking,
    Content,
}

/// Separates `<think>…</think>` from the answer.
#[derive(Debug, Clone)]
struct ThinkSplitter {
    open: String,
    close: String,
    state: ThinkState,
    buf: String,
}

impl ThinkSplitter {
    fn new(open: &str, close: &str, forced_open: bool) -> Self {
        ThinkSplitter { open: open.into(), close: close.into(), state: if forced_open { ThinkState::ThinkingStart } else { ThinkState::Start }, buf: String::new() }
    }

    /// (is thinking, text) pairs.
    fn push(&mut self, piece: &str) -> Vec<(bool, String)> {
        self.buf.push_str(piece);
        let mut out = Vec::new();
        loop {
            match self.state {
                ThinkState::Start => {
                    let trimmed = self.buf.trim_start();
                    if trimmed.is_empty() {
                        return out;
                    }
                    if let Some(rest) = trimmed.strip_prefix(self.open.as_str()) {
                        self.buf = rest.to_string();
                        self.state = ThinkState::ThinkingStart;
                    } else if self.open.starts_with(trimmed) {
                        return out; // the tag may still be arriving
                    } else {
                        self.state = ThinkState::Content;
                    }
                }
                ThinkState::ThinkingStart => {
                    let trimmed = self.buf.trim_start();
                    if trimmed.is_empty() {
                        self.buf.clear();
                        return out;
                    }
                    self.buf = trimmed.to_string();
                    self.state = ThinkState::Thinking;
                }
                ThinkState::Thinking => {
                    if let Some(i) = self.buf.find(self.close.as_str()) {
                        let thought = self.buf[..i].trim_end().to_string();
                        out.push((true, thought));
                        self.buf = self.buf[i + self.close.len()..].to_string();
                        self.state = ThinkState::AfterThinking;
                    } else {
                        // Hold back a partial closing tag and trailing whitespace (trimmed at the end).
                        let partial = partial_tag_len(&self.buf, &self.close);
                        let before = &self.buf[..self.buf.len() - partial];
                        let hold = partial + (before.len() - before.trim_end().len());
                        let emit = self.buf.len() - hold;
                        if emit > 0 {
                            out.push((true, self.buf[..emit].to_string()));
                            self.buf.drain(..emit);
                        }
                        return out;
                    }
                }
                ThinkState::AfterThinking => {
                    let trimmed = self.buf.trim_start();
                    if trimmed.is_empty() {
                        self.buf.clear();
                        return out;
                    }
                    self.buf = trimmed.to_string();
                    self.state = ThinkState::Content;
                }
                ThinkState::Content => {
                    if !self.buf.is_empty() {
                        out.push((false, std::mem::take(&mut self.buf)));
                    }
                    return out;
                }
            }
        }
    }

    fn finish(&mut self) -> Vec<(bool, String)> {
        let rest = std::mem::take(&mut self.buf);
        match self.state {
            ThinkState::Thinking => vec![(true, rest.trim_end().to_string())],
            ThinkState::ThinkingStart | ThinkState::AfterThinking => Vec::new(),
            ThinkState::Start | ThinkState::Content => vec![(false, rest)],
        }
    }
}

#[derive(Debug, Clone)]
enum ScanState {
    /// At the start of a reply that may be one untagged call ([`ReplyParser::untagged_calls`]).
    WholeReply,
    /// Looking for an opener in content.
    Content,
    /// Inside a call that opener `usize` started; the buffer holds the text after the tag
    /// (for JSON tags, starting with the tag itself).
    Call(usize),
    /// After a call: whitespace and the opener's closing text (once; `true` when seen) are dropped.
    Closing(usize, bool),
}

/// Finds tool calls in content.
#[derive(Debug, Clone)]
struct CallScanner {
    syntax: ToolSyntax,
    names: Vec<String>,
    state: ScanState,
    buf: String,
    calls: usize,
    calls_only: bool,
    /// The declared functions' argument schemas, when a whole reply may be an untagged call.
    untagged: Option<Vec<(String, Value)>>,
}

impl CallScanner {
    fn new(syntax: ToolSyntax, names: Vec<String>) -> Self {
        CallScanner { syntax, names, state: ScanState::Content, buf: String::new(), calls: 0, calls_only: false, untagged: None }
    }

    fn push(&mut self, text: &str, out: &mut Vec<ReplyPart>) {
        self.buf.push_str(text);
        while self.step(out, false) {}
    }

    fn finish(&mut self, out: &mut Vec<ReplyPart>) {
        while self.step(out, true) {}
        if self.calls_only {
            // What is left is the start of a call the token limit cut off.
        } else if let ScanState::Call(i) = self.state {
            // An unfinished call is text after all: never lose it.
            let opener = &self.syntax.openers[i];
            let text = if opener.tag_is_json { std::mem::take(&mut self.buf) } else { format!("{}{}", opener.tag, self.buf) };
            self.buf.clear();
            content(out, &text);
        } else if !self.buf.is_empty() && matches!(self.state, ScanState::Content) {
            content(out, &std::mem::take(&mut self.buf));
        }
        self.buf.clear();
        self.state = ScanState::Content;
    }

    /// One transition; false when more text is needed.
    fn step(&mut self, out: &mut Vec<ReplyPart>, at_end: bool) -> bool {
        match self.state {
            ScanState::WholeReply => {
                let calls = match whole_reply_json(&self.buf, at_end) {
                    WholeReply::Pending => return false,
                    WholeReply::Not => None,
                    WholeReply::Json(json) => doubled_braces_json(json).and_then(|v| extract_calls(&v)).filter(|calls| !calls.is_empty() && calls.iter().all(|c| self.declared_and_valid(c))),
                };
                match calls {
                    Some(calls) => {
                        self.emit(out, calls);
                        self.buf.clear();
                    }
                    // Scanned as any reply is, from its first character.
                    None => self.state = ScanState::Content,
                }
                true
            }
            ScanState::Content => {
                let first = self.syntax.openers.iter().enumerate().filter_map(|(i, o)| self.buf.find(o.tag.as_str()).map(|at| (at, i))).min();
                match first {
                    Some((at, i)) => {
                        content(out, &self.buf[..at]);
                        let opener = &self.syntax.openers[i];
                        let skip = if opener.tag_is_json { at } else { at + opener.tag.len() };
                        self.buf.drain(..skip);
                        self.state = ScanState::Call(i);
                        true
                    }
                    None => {
                        let hold = if at_end { 0 } else { self.syntax.openers.iter().map(|o| partial_tag_len(&self.buf, &o.tag)).max().unwrap_or(0) };
                        let emit = self.buf.len() - hold;
                        content(out, &self.buf[..emit]);
                        self.buf.drain(..emit);
                        false
                    }
                }
            }
            ScanState::Call(i) => {
                let opener = self.syntax.openers[i].clone();
                let lead = self.buf.len() - self.buf.trim_start().len();
                let body = &self.buf[lead..];
                let Some(first) = body.chars().next() else { return false };
                if first != '{' && first != '[' {
                    // Mistral's newer `[TOOL_CALLS]name[ARGS]{…}`.
                    if let Some(args_at) = body.find("[ARGS]") {
                        let name = body[..args_at].trim();
                        let json = &body[args_at + "[ARGS]".len()..];
                        if !name.is_empty() && !name.contains(char::is_whitespace) {
                            return match json_end(json.trim_start()) {
                                JsonEnd::Incomplete => false,
                                JsonEnd::Invalid => self.not_a_call(out, &opener),
                                JsonEnd::At(end) => {
                                    let json = json.trim_start();
                                    let consumed = self.buf.len() - json.len() + end;
                                    match serde_json::from_str::<Value>(&json[..end]).ok().and_then(|args| make_call(name, args, None)).filter(|c| self.names.contains(&c.function.name)) {
                                        Some(call) => {
                                            self.emit(out, vec![call]);
                                            self.buf.drain(..consumed);
                                            self.state = ScanState::Closing(i, false);
                                            true
                                        }
                                        None => self.not_a_call(out, &opener),
                                    }
                                }
                            };
                        }
                    }
                    let could_be_name = body.chars().all(|c| c.is_alphanumeric() || "_-.".contains(c)) || partial_tag_len(body, "[ARGS]") > 0;
                    if could_be_name && !at_end && opener.tag == "[TOOL_CALLS]" {
                        return false;
                    }
                    return self.not_a_call(out, &opener);
                }
                match json_end(body) {
                    JsonEnd::Incomplete => false,
                    JsonEnd::Invalid => self.not_a_call(out, &opener),
                    JsonEnd::At(end) => {
                        let calls = serde_json::from_str::<Value>(&body[..end]).ok().and_then(|v| extract_calls(&v));
                        // A call of a function the request did not declare is text: a client cannot run it.
                        let known = |calls: &Vec<ToolCall>| calls.iter().all(|c| self.names.contains(&c.function.name));
                        match calls.filter(|c| !c.is_empty() && known(c)) {
                            Some(calls) => {
                                self.emit(out, calls);
                                self.buf.drain(..lead + end);
                                self.state = ScanState::Closing(i, false);
                                true
                            }
                            None => self.not_a_call(out, &opener),
                        }
                    }
                }
            }
            ScanState::Closing(i, closed) => {
                let close = self.syntax.openers[i].close.clone().filter(|_| !closed);
                let trimmed = self.buf.trim_start();
                if trimmed.is_empty() {
                    // Whitespace around calls is not content.
                    self.buf.clear();
                    return false;
                }
                let lead = self.buf.len() - trimmed.len();
                if let Some(close) = close {
                    if trimmed.starts_with(close.as_str()) {
                        self.buf.drain(..lead + close.len());
                        self.state = ScanState::Closing(i, true);
                        return true;
                    }
                    if close.starts_with(trimmed) {
                        // Still arriving, or cut by the token limit: never content either way.
                        if at_end {
                            self.buf.clear();
                        }
                        return false;
                    }
                }
                // Separators between bare JSON calls (`;`) are not content either.
                if trimmed.starts_with(';') {
                    self.buf.drain(..lead + 1);
                    self.state = ScanState::Closing(i, true);
                    return true;
                }
                self.buf.drain(..lead);
                self.state = ScanState::Content;
                true
            }
        }
    }

    /// The text at the cursor is not a call: pass the opener on as content and scan on after it.
    fn not_a_call(&mut self, out: &mut Vec<ReplyPart>, opener: &Opener) -> bool {
        if opener.tag_is_json {
            let c = self.buf.chars().next().map_or(0, char::len_utf8);
            content(out, &self.buf[..c]);
            self.buf.drain(..c);
        } else {
            content(out, &opener.tag);
        }
        self.state = ScanState::Content;
        true
    }

    /// Whether `call` names a declared function and its arguments validate against its schema.
    fn declared_and_valid(&self, call: &ToolCall) -> bool {
        let schema = self.untagged.iter().flatten().find(|(name, _)| *name == call.function.name).map(|(_, schema)| schema);
        schema.is_some_and(|schema| jsonschema::validator_for(schema).is_ok_and(|v| v.is_valid(&call.function.arguments)))
    }

    fn emit(&mut self, out: &mut Vec<ReplyPart>, calls: Vec<ToolCall>) {
        for mut call in calls {
            call.function.index = Some(self.calls);
            self.calls += 1;
            out.push(ReplyPart::ToolCall(call));
        }
    }
}

fn content(out: &mut Vec<ReplyPart>, text: &str) {
    if text.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(ReplyPart::Content(last)) => last.push_str(text),
        _ => out.push(ReplyPart::Content(text.to_string())),
    }
}

/// What the text so far says about a reply that may be nothing but JSON.
enum WholeReply<'a> {
    /// It may still be: wait for more text.
    Pending,
    Not,
    /// It is this JSON (fence and whitespace around it stripped), and the reply has ended.
    Json(&'a str),
}

/// A reply that is only a JSON object or array, optionally in a ```json (or bare ```) fence.
fn whole_reply_json(text: &str, at_end: bool) -> WholeReply<'_> {
    let wait = || if at_end { WholeReply::Not } else { WholeReply::Pending };
    let t = text.trim_start();
    if t.is_empty() || (t.len() < 3 && "```".starts_with(t)) {
        return wait();
    }
    let (fenced, body) = match t.strip_prefix("```") {
        Some(rest) => {
            let Some(line_end) = rest.find('\n') else {
                return if "json".starts_with(rest.trim()) { wait() } else { WholeReply::Not };
            };
            if !matches!(rest[..line_end].trim(), "" | "json" | "JSON") {
                return WholeReply::Not;
            }
            (true, rest[line_end + 1..].trim_start())
        }
        None => (false, t),
    };
    if body.is_empty() {
        return wait();
    }
    if !body.starts_with(['{', '[']) {
        return WholeReply::Not;
    }
    let end = match json_end(body) {
        JsonEnd::Incomplete => return wait(),
        JsonEnd::Invalid => return WholeReply::Not,
        JsonEnd::At(end) => end,
    };
    let rest = body[end..].trim();
    let rest = match rest.strip_prefix("```") {
        Some(after) if fenced => after.trim(),
        // The closing fence may be arriving, or a cut reply may lack it.
        _ if fenced && "```".starts_with(rest) => "",
        _ => rest,
    };
    match (rest.is_empty(), at_end) {
        (false, _) => WholeReply::Not,
        (true, false) => WholeReply::Pending,
        (true, true) => WholeReply::Json(&body[..end]),
    }
}

/// `json` parsed; a call wrapped in doubled braces (`{{"name": …}}`, as small models copy a
/// template's `{{`) is read as the call it means.
fn doubled_braces_json(json: &str) -> Option<Value> {
    serde_json::from_str(json).ok().or_else(|| {
        let inner = json.strip_prefix('{')?.strip_suffix('}')?;
        inner.trim_start().starts_with('{').then(|| serde_json::from_str(inner).ok())?
    })
}

enum JsonEnd {
    Incomplete,
    Invalid,
    At(usize),
}

/// Where the JSON object or array at the start of `s` ends (brackets balanced outside strings).
fn json_end(s: &str) -> JsonEnd {
    let mut stack: Vec<u8> = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    for (i, b) in s.bytes().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => stack.push(b'}'),
            b'[' => stack.push(b']'),
            b'}' | b']' => {
                if stack.pop() != Some(b) {
                    return JsonEnd::Invalid;
                }
                if stack.is_empty() {
                    return JsonEnd::At(i + 1);
                }
            }
            _ if i == 0 => return JsonEnd::Invalid,
            _ => {}
        }
    }
    JsonEnd::Incomplete
}

/// The calls a JSON value describes: `{"name", "arguments"|"parameters"}`, the OpenAI shape
/// `{"type": "function", "function": {…}}`, or a list of those. `None` when it is anything else.
pub(crate) fn extract_calls(v: &Value) -> Option<Vec<ToolCall>> {
    match v {
        Value::Array(items) => items.iter().map(|i| extract_calls(i)).collect::<Option<Vec<_>>>().map(|v| v.concat()),
        Value::Object(o) => {
            let id = o.get("id").and_then(Value::as_str).map(str::to_string);
            if let Some(Value::Object(f)) = o.get("function") {
                let mut f = f.clone();
                if let Some(id) = &id {
                    f.insert("id".into(), Value::String(id.clone()));
                }
                return extract_calls(&Value::Object(f));
            }
            let name = o.get("name")?.as_str()?;
            let args = o.get("arguments").or_else(|| o.get("parameters")).cloned().unwrap_or_else(|| Value::Object(Map::new()));
            make_call(name, args, id).map(|c| vec![c])
        }
        _ => None,
    }
}

fn make_call(name: &str, args: Value, id: Option<String>) -> Option<ToolCall> {
    let args = match args {
        Value::String(s) => serde_json::from_str::<Value>(&s).ok()?,
        a => a,
    };
    if !args.is_object() || name.is_empty() {
        return None;
    }
    Some(ToolCall { id: Some(id.unwrap_or_else(new_call_id)), function: ToolCallFunction { index: None, name: name.to_string(), arguments: args } })
}
