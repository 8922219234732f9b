//! The reply parser on outputs in each family's format (as the models write them: Qwen 2.5,
//! Hermes 2 Pro, Mistral Nemo, Llama 3.1, a Qwen 3 thinking reply), whole and cut at every byte.

use serde_json::json;

use super::*;

fn names() -> Vec<String> {
    vec!["get_weather".into(), "get_time".into()]
}

/// Feeds `pieces` and returns the parts with neighbours of one kind joined and call ids blanked.
fn run(parser: &ReplyParser, pieces: &[&str]) -> Vec<ReplyPart> {
    let mut p = parser.clone();
    let mut parts = Vec::new();
    for piece in pieces {
        parts.extend(p.push(piece));
    }
    parts.extend(p.finish());
    normalise(parts)
}

fn normalise(parts: Vec<ReplyPart>) -> Vec<ReplyPart> {
    let mut out: Vec<ReplyPart> = Vec::new();
    for part in parts {
        let part = match part {
            ReplyPart::ToolCall(mut c) => {
                assert!(c.id.as_deref().is_some_and(|id| !id.is_empty()), "every call has an id");
                c.id = None;
                ReplyPart::ToolCall(c)
            }
            p => p,
        };
        match (out.last_mut(), part) {
            (Some(ReplyPart::Content(a)), ReplyPart::Content(b)) => a.push_str(&b),
            (Some(ReplyPart::Thinking(a)), ReplyPart::Thinking(b)) => a.push_str(&b),
            (_, p) => out.push(p),
        }
    }
    out
}

/// The whole output, every two-piece cut, and one byte (character) at a time all parse alike.
fn assert_stream_invariant(parser: &ReplyParser, output: &str) -> Vec<ReplyPart> {
    let whole = run(parser, &[output]);
    for cut in (1..output.len()).filter(|&i| output.is_char_boundary(i)) {
        assert_eq!(run(parser, &[&output[..cut], &output[cut..]]), whole, "cut at byte {cut} of {output:?}");
    }
    let chars: Vec<String> = output.chars().map(String::from).collect();
    let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(run(parser, &pieces), whole, "one character at a time");
    whole
}

fn call(index: usize, name: &str, arguments: serde_json::Value) -> ReplyPart {
    ReplyPart::ToolCall(ToolCall { id: None, function: ToolCallFunction { index: Some(index), name: name.into(), arguments } })
}

fn content(s: &str) -> ReplyPart {
    ReplyPart::Content(s.into())
}

fn tools_parser(syntax: ToolSyntax) -> ReplyParser {
    ReplyParser::new(None, Some((syntax, names())))
}

const QWEN: &str = include_str!("../template/testdata/jinja/qwen2.5-instruct.jinja");

#[test]
fn hermes_qwen_calls_are_parsed_with_text_before_them() {
    let syntax = ToolSyntax::for_template(PromptFormat::Jinja, Some(QWEN));
    assert_eq!(syntax.family, Family::Hermes);
    let p = tools_parser(syntax);
    let out = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"Europe/Paris\"}}\n</tool_call>";
    assert_eq!(
        assert_stream_invariant(&p, out),
        vec![content("Let me check.\n"), call(0, "get_weather", json!({"city": "Paris", "unit": "celsius"})), call(1, "get_time", json!({"tz": "Europe/Paris"}))]
    );
}

#[test]
fn hermes_call_with_braces_and_escapes_inside_strings() {
    let p = tools_parser(ToolSyntax::hermes());
    let out = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"a}b{\\\"c\\\"]é\"}}\n</tool_call>";
    assert_eq!(assert_stream_invariant(&p, out), vec![call(0, "get_weather", json!({"city": "a}b{\"c\"]é"}))]);
}

#[test]
fn plain_text_and_a_broken_call_are_kept_as_content() {
    let p = tools_parser(ToolSyntax::hermes());
    let out = "The answer is 42 {not json} and <tool_ca";
    assert_eq!(assert_stream_invariant(&p, out), vec![content(out)]);
    // A call cut off by the token limit is text, not half a call.
    let cut = "Sure <tool_call>\n{\"name\": \"get_weather\", \"argu";
    assert_eq!(assert_stream_invariant(&p, cut), vec![content(cut)]);
    // Not a call shape: the text survives.
    let odd = "<tool_call>[1, 2]</tool_call> ok";
    assert_eq!(assert_stream_invariant(&p, odd), vec![content(odd)]);
}

#[test]
fn a_call_of_an_undeclared_function_is_text() {
    let p = tools_parser(ToolSyntax::hermes());
    let out = "<tool_call>\n{\"name\": \"get_weather_args\", \"arguments\": {}}\n</tool_call>";
    assert_eq!(assert_stream_invariant(&p, out), vec![content(out)]);
}

#[test]
fn a_grammar_forced_reply_drops_the_call_the_token_limit_cut() {
    let out = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"";
    let calls_only = tools_parser(ToolSyntax::hermes()).calls_only();
    assert_eq!(assert_stream_invariant(&calls_only, out), vec![call(0, "get_weather", json!({"city": "Paris"}))]);
    // Without the grammar the cut call is kept as text.
    let auto = tools_parser(ToolSyntax::hermes());
    assert_eq!(assert_stream_invariant(&auto, out), vec![call(0, "get_weather", json!({"city": "Paris"})), content("<tool_call>\n{\"name\": \"")]);
}

/// Qwen2.5-Coder 0.5B Instruct, asked through the ollama client with a `get_weather` tool,
/// answers with the call and no `<tool_call>` tags (recorded from the real model).
const QWEN_UNTAGGED: &str = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";

fn untagged_parser() -> ReplyParser {
    let schemas = vec![
        ("get_weather".to_string(), json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})),
        ("get_time".to_string(), json!({"type": "object", "properties": {"tz": {"type": "string"}}})),
    ];
    tools_parser(ToolSyntax::for_template(PromptFormat::Jinja, Some(QWEN))).untagged_calls(schemas)
}

#[test]
fn a_reply_that_is_only_an_untagged_valid_call_is_a_call() {
    let p = untagged_parser();
    let paris = call(0, "get_weather", json!({"city": "Paris"}));
    assert_eq!(assert_stream_invariant(&p, QWEN_UNTAGGED), vec![paris.clone()]);
    assert_eq!(assert_stream_invariant(&p, &format!("\n```json\n{QWEN_UNTAGGED}\n```\n")), vec![paris.clone()]);
    // Qwen2.5-Coder 1.5B, given a tool's result, repeats its call in doubled braces.
    assert_eq!(assert_stream_invariant(&p, &format!("{{{QWEN_UNTAGGED}}}")), vec![paris.clone()]);
    let two = format!("[{QWEN_UNTAGGED}, {{\"name\": \"get_time\", \"arguments\": {{}}}}]");
    assert_eq!(assert_stream_invariant(&p, &two), vec![paris, call(1, "get_time", json!({}))]);
}

#[test]
fn untagged_json_that_is_not_exactly_a_valid_call_stays_text() {
    let p = untagged_parser();
    for text in [
        // An undeclared function, arguments against the schema (missing, wrong type).
        "{\"name\": \"get_wind\", \"arguments\": {\"city\": \"Paris\"}}",
        "{\"name\": \"get_weather\", \"arguments\": {}}",
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": 75}}",
        // More than the call, or not a call at all.
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}} is what I would call.",
        "```python\nprint(1)\n```",
        "{\"city\": \"Paris\"}",
        "{\"name\": \"get_weather\", \"argu",
        "{{\"city\": \"Paris\"}}",
    ] {
        assert_eq!(assert_stream_invariant(&p, text), vec![content(text)], "{text}");
    }
    // A reply that does not start like JSON streams at once.
    let mut streaming = p.clone();
    assert_eq!(streaming.push("Hello"), vec![content("Hello")]);
}

#[test]
fn a_partial_closing_tag_never_reaches_the_content() {
    let out = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_";
    for p in [tools_parser(ToolSyntax::hermes()).calls_only(), tools_parser(ToolSyntax::hermes())] {
        assert_eq!(assert_stream_invariant(&p, out), vec![call(0, "get_weather", json!({"city": "Paris"}))]);
    }
}

#[test]
fn mistral_tool_calls_array_with_ids() {
    let src = include_str!("../template/testdata/jinja/mistral-nemo-instruct-2407.jinja");
    let syntax = ToolSyntax::for_template(PromptFormat::Jinja, Some(src));
    assert_eq!(syntax.family, Family::Mistral);
    let p = tools_parser(syntax);
    let out = "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"a1B2c3D4e\"}, {\"name\": \"get_time\", \"arguments\": {}, \"id\": \"z9Y8x7W6v\"}]";
    let whole = run(&p, &[out]);
    let mut p2 = p.clone();
    let raw: Vec<ReplyPart> = [p2.push(out), p2.finish()].concat();
    match &raw[0] {
        ReplyPart::ToolCall(c) => assert_eq!(c.id.as_deref(), Some("a1B2c3D4e")),
        other => panic!("{other:?}"),
    }
    assert_eq!(assert_stream_invariant(&p, out), whole);
    assert_eq!(whole, vec![call(0, "get_weather", json!({"city": "Paris"})), call(1, "get_time", json!({}))]);
}

#[test]
fn mistral_newer_name_args_form() {
    let p = tools_parser(ToolSyntax::tagged(Family::Mistral, "[TOOL_CALLS]", None));
    let out = "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}";
    assert_eq!(assert_stream_invariant(&p, out), vec![call(0, "get_weather", json!({"city": "Oslo"}))]);
}

#[test]
fn llama31_bare_json_with_parameters_and_python_tag() {
    let src = include_str!("../template/testdata/jinja/llama3.1-instruct.jinja");
    let syntax = ToolSyntax::for_template(PromptFormat::Jinja, Some(src));
    assert_eq!((syntax.family, syntax.arguments_key()), (Family::Llama3, "parameters"));
    let p = tools_parser(syntax);
    let out = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}";
    assert_eq!(assert_stream_invariant(&p, out), vec![call(0, "get_weather", json!({"city": "Paris"}))]);
    let tagged = "<|python_tag|>{\"name\": \"get_time\", \"parameters\": {\"tz\": \"UTC\"}}";
    assert_eq!(assert_stream_invariant(&p, tagged), vec![call(0, "get_time", json!({"tz": "UTC"}))]);
    // JSON that names no declared tool is an answer, not a call.
    let answer = "Here: {\"name\": \"Bob\", \"parameters\": {}} and {\"a\": 1}";
    assert_eq!(assert_stream_invariant(&p, answer), vec![content(answer)]);
}

#[test]
fn ollama_go_template_tags_follow_parse_tag() {
    let llama = include_str!("../template/testdata/ollama/llama3.1-library.gotmpl");
    assert_eq!(go_template_tag(llama).as_deref(), Some("{"));
    assert_eq!(ToolSyntax::for_template(PromptFormat::GoTemplate, Some(llama)).openers[0].tag, "{");
    let qwen = "{{- range .ToolCalls }}\n<tool_call>\n{\"name\": \"{{ .Function.Name }}\", \"arguments\": {{ .Function.Arguments }}}\n</tool_call>\n{{- end }}";
    assert_eq!(go_template_tag(qwen).as_deref(), Some("<tool_call>"));
    let syntax = ToolSyntax::for_template(PromptFormat::GoTemplate, Some(qwen));
    assert_eq!(syntax.openers[0].close.as_deref(), Some("</tool_call>"));
    let mistral = "{{- if .ToolCalls }}[TOOL_CALLS][{{ range .ToolCalls }}{\"name\": \"{{ .Function.Name }}\"}{{ end }}]{{ end }}";
    assert_eq!(go_template_tag(mistral).as_deref(), Some("{"));
    let mistral_tagged = "{{- if .ToolCalls }}{{ range .ToolCalls }}[TOOL_CALLS] {\"name\": \"{{ .Function.Name }}\"}{{ end }}{{ end }}";
    assert_eq!(go_template_tag(mistral_tagged).as_deref(), Some("[TOOL_CALLS]"));
    assert_eq!(go_template_tag("{{ .Prompt }}"), None);
    let p = tools_parser(ToolSyntax::for_template(PromptFormat::GoTemplate, Some(llama)));
    let out = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}";
    assert_eq!(assert_stream_invariant(&p, out), vec![call(0, "get_weather", json!({"city": "Rome"}))]);
}

#[test]
fn arguments_as_a_json_string_and_the_openai_shape_are_accepted() {
    let p = tools_parser(ToolSyntax::hermes());
    let out = "<tool_call>{\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"arguments\": \"{\\\"tz\\\": \\\"UTC\\\"}\"}}</tool_call>";
    assert_eq!(assert_stream_invariant(&p, out), vec![call(0, "get_time", json!({"tz": "UTC"}))]);
}

#[test]
fn thinking_is_split_from_the_answer() {
    let p = ReplyParser::new(Some((("<think>", "</think>"), false, true)), None);
    let out = "<think>\nThe user greets me. I should greet back.\n</think>\n\nHello! How can I help?";
    assert_eq!(
        assert_stream_invariant(&p, out),
        vec![ReplyPart::Thinking("The user greets me. I should greet back.".into()), content("Hello! How can I help?")]
    );
    // A template that opened <think> in the prompt: the reply starts inside the thought.
    let forced = ReplyParser::new(Some((("<think>", "</think>"), true, true)), None);
    assert_eq!(assert_stream_invariant(&forced, "Hmm, 2+2.\n</think>\n\n4"), vec![ReplyPart::Thinking("Hmm, 2+2.".into()), content("4")]);
    // No think tags: all answer. Thinking off: the reasoning is dropped, never mixed in.
    assert_eq!(assert_stream_invariant(&p, "Just <b>text</b>"), vec![content("Just <b>text</b>")]);
    let off = ReplyParser::new(Some((("<think>", "</think>"), false, false)), None);
    assert_eq!(assert_stream_invariant(&off, out), vec![content("Hello! How can I help?")]);
}

#[test]
fn thinking_then_a_tool_call() {
    let p = ReplyParser::new(Some((("<think>", "</think>"), false, true)), Some((ToolSyntax::hermes(), names())));
    let out = "<think>Need the weather.</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    assert_eq!(assert_stream_invariant(&p, out), vec![ReplyPart::Thinking("Need the weather.".into()), call(0, "get_weather", json!({"city": "Paris"}))]);
}

#[test]
fn tool_requests_are_validated() {
    let tool = json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}});
    let ok = ToolRequest { tools: vec![tool.clone()], choice: ToolChoice::Function("get_weather".into()), parallel: true };
    assert!(ok.validate().is_ok());
    let missing = ToolRequest { choice: ToolChoice::Function("nope".into()), ..ok.clone() };
    assert!(missing.validate().unwrap_err().contains("nope"));
    let nameless = ToolRequest { tools: vec![json!({"type": "function", "function": {}})], ..Default::default() };
    assert!(nameless.validate().unwrap_err().contains("tools[0]"));
    let required = ToolRequest { choice: ToolChoice::Required, ..Default::default() };
    assert!(required.validate().is_err());
    assert_eq!(Think::from_json(&json!("high")).unwrap(), Some(Think::Level("high".into())));
    assert!(Think::from_json(&json!("max")).is_err());
}

#[test]
fn required_grammar_wraps_the_schema_in_the_family_syntax() {
    let tools = vec![
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}),
        json!({"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}),
    ];
    let req = ToolRequest { tools, choice: ToolChoice::Required, parallel: false };
    let g = tool_grammar(&ToolSyntax::hermes(), &req, None).unwrap();
    assert!(g.starts_with("root ::= call-block (\"\\n\" call-block){0,0}\ncall-block ::= \"<tool_call>\" \"\\n\" tool-call \"\\n\" \"</tool_call>\""), "{g}");
    assert!(g.contains("tool-call ::=") && g.contains("get_weather") && g.contains("get_time"), "{g}");
    assert_eq!(g.matches("root ::=").count(), 1, "{g}");
    let only = tool_grammar(&ToolSyntax::hermes(), &req, Some("get_time")).unwrap();
    assert!(!only.contains("get_weather"), "{only}");
    let mistral = tool_grammar(&ToolSyntax::tagged(Family::Mistral, "[TOOL_CALLS]", None), &req, None).unwrap();
    assert!(mistral.starts_with("root ::= \"[TOOL_CALLS]\" \"[\" tool-call"), "{mistral}");
}
