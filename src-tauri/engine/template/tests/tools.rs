//! Tools, tool calls, tool results and thinking in prompts: Jinja templates against Hugging
//! Face's `apply_chat_template` output (`testdata/jinja/gen_expected.py`), Ollama Go templates
//! with `.Tools` / `.ToolCalls`, and the plain format.

use serde_json::json;

use super::*;
use crate::engine::tools::{Think, ToolCall, ToolCallFunction};

/// `TOOLS` of gen_expected.py.
fn tools() -> Vec<serde_json::Value> {
    vec![json!({
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city, e.g. Paris"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    })]
}

/// `TOOL_CONVERSATION` of gen_expected.py.
fn tool_conversation() -> Vec<ChatMessage> {
    let call = ToolCall {
        id: Some("call0001A".into()),
        function: ToolCallFunction { index: None, name: "get_current_weather".into(), arguments: json!({"city": "Paris", "unit": "celsius"}) },
    };
    vec![
        ChatMessage::new("system", "You are a helpful assistant."),
        ChatMessage::new("user", "What is the weather in Paris?"),
        ChatMessage { tool_calls: vec![call], ..ChatMessage::new("assistant", "") },
        ChatMessage {
            tool_call_id: Some("call0001A".into()),
            tool_name: Some("get_current_weather".into()),
            ..ChatMessage::new("tool", r#"{"temperature": 22, "unit": "celsius"}"#)
        },
    ]
}

fn render_with(template: &str, bos: &str, eos: &str, messages: &[ChatMessage], extras: PromptExtras) -> String {
    let out = render_chat_full_at(&jinja_spec(template, bos, eos), messages, true, extras, NOW).unwrap_or_else(|e| panic!("render failed: {e}"));
    assert_eq!(out.format, PromptFormat::Jinja);
    out.text
}

#[test]
fn qwen25_with_tools_call_and_result_matches_hf() {
    let tools = tools();
    let out = render_with(
        include_str!("../testdata/jinja/qwen2.5-instruct.jinja"),
        "",
        "<|im_end|>",
        &tool_conversation(),
        PromptExtras { tools: Some(&tools), think: None },
    );
    assert_eq!(out, include_str!("../testdata/jinja/expected/qwen2.5-instruct-tools.txt"));
}

#[test]
fn llama31_with_tools_call_and_result_matches_hf() {
    let tools = tools();
    let out = render_with(
        include_str!("../testdata/jinja/llama3.1-instruct.jinja"),
        "<|begin_of_text|>",
        "<|eot_id|>",
        &tool_conversation(),
        PromptExtras { tools: Some(&tools), think: None },
    );
    assert_eq!(out, include_str!("../testdata/jinja/expected/llama3.1-instruct-tools.txt"));
}

#[test]
fn mistral_nemo_with_tools_call_and_result_matches_hf() {
    let tools = tools();
    let out = render_with(
        include_str!("../testdata/jinja/mistral-nemo-instruct-2407.jinja"),
        "<s>",
        "</s>",
        &tool_conversation()[1..],
        PromptExtras { tools: Some(&tools), think: None },
    );
    assert_eq!(out, include_str!("../testdata/jinja/expected/mistral-nemo-instruct-2407-tools.txt"));
}

#[test]
fn thinking_template_with_tools_matches_hf() {
    let tools = tools();
    let template = include_str!("../testdata/jinja/thinking-qwen3-style.jinja");
    let out = render_with(template, "", "<|im_end|>", &tool_conversation(), PromptExtras { tools: Some(&tools), think: None });
    assert_eq!(out, include_str!("../testdata/jinja/expected/thinking-qwen3-style-tools.txt"));
}

#[test]
fn think_false_reaches_the_template_as_enable_thinking() {
    let template = include_str!("../testdata/jinja/thinking-qwen3-style.jinja");
    let out = render_with(template, "", "<|im_end|>", &conversation(), PromptExtras { tools: None, think: Some(&Think::Off) });
    assert_eq!(out, include_str!("../testdata/jinja/expected/thinking-qwen3-style-think-off.txt"));
    // Unset, the template's default (thinking on) applies: no empty think block.
    let default = render_with(template, "", "<|im_end|>", &conversation(), PromptExtras::default());
    assert!(default.ends_with("<|im_start|>assistant\n"), "{default}");
}

#[test]
fn reasoning_in_history_reaches_the_template_as_reasoning_content() {
    let template = include_str!("../testdata/jinja/thinking-qwen3-style.jinja");
    let mut messages = conversation()[..3].to_vec();
    messages.push(ChatMessage { thinking: Some("They want a demo.".into()), ..ChatMessage::new("assistant", "Sure.") });
    let out = render_with(template, "", "<|im_end|>", &messages, PromptExtras { tools: None, think: Some(&Think::On) });
    assert_eq!(out, include_str!("../testdata/jinja/expected/thinking-qwen3-style-history.txt"));
}

#[test]
fn forced_open_thinking_template_matches_hf() {
    let template = include_str!("../testdata/jinja/thinking-forced-open.jinja");
    let out = render_with(template, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", &conversation(), PromptExtras::default());
    assert_eq!(out, include_str!("../testdata/jinja/expected/thinking-forced-open.txt"));
    assert!(crate::engine::tools::thinking_forced_open(&out, "<think>"));
}

/// Ollama's `llama3.1` library template renders tools and calls like Ollama: each tool's JSON
/// in the last user turn, the call as `{"name": …, "parameters": …}`, the result as `ipython`.
#[test]
fn ollama_llama31_template_gets_tools_and_tool_calls() {
    let tools = tools();
    let spec = go_spec(include_str!("../testdata/ollama/llama3.1-library.gotmpl"));
    let mut messages = tool_conversation();
    messages.push(ChatMessage::new("assistant", "It is 22 °C in Paris."));
    messages.push(ChatMessage::new("user", "And in Rome?"));
    let out = render_chat_full_at(&spec, &messages, true, PromptExtras { tools: Some(&tools), think: None }, NOW).unwrap();
    assert_eq!(out.format, PromptFormat::GoTemplate);
    let tool_json = r#"{"type":"function","function":{"name":"get_current_weather","description":"Get the current weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string","description":"The city, e.g. Paris"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}}}"#;
    assert!(out.text.contains(&format!("{tool_json}\n")), "{}", out.text);
    assert!(out.text.contains(r#"{"name": "get_current_weather", "parameters": {"city":"Paris","unit":"celsius"}}"#), "{}", out.text);
    assert!(out.text.contains("<|start_header_id|>ipython<|end_header_id|>\n\n{\"temperature\": 22, \"unit\": \"celsius\"}<|eot_id|>"), "{}", out.text);
    // Tools go with the last user message only.
    let last_user = out.text.rfind("And in Rome?").unwrap();
    assert!(out.text.find(tool_json).unwrap() < last_user && out.text.find(tool_json).unwrap() > out.text.find("It is 22").unwrap());
}

#[test]
fn go_template_fields_of_tools_and_think_flags() {
    let tools = tools();
    let template = "{{ range .Tools }}{{ .Function.Name }}|{{ .Type }}|{{ range $k, $v := .Function.Parameters.Properties }}{{ $k }}:{{ $v.Type }}:{{ toTypeScriptType $v }};{{ end }}|{{ len .Function.Parameters.Required }}{{ end }}\
{{ range .Messages }}{{ range .ToolCalls }}[{{ .ID }} {{ .Function.Name }} {{ .Function.Arguments.city }} {{ .Function.Arguments }}]{{ end }}{{ if eq .Role \"tool\" }}({{ .ToolName }} {{ .ToolCallID }}){{ end }}{{ end }} \
        think={{ .Think }} level={{ .ThinkLevel }} set={{ .IsThinkSet }}";
    let think = Think::Level("high".into());
    let out = render_chat_full_at(&go_spec(template), &tool_conversation(), true, PromptExtras { tools: Some(&tools), think: Some(&think) }, NOW).unwrap();
    assert_eq!(
        out.text,
        r#"get_current_weather|function|city:string:string;unit:string:string;|1[call0001A get_current_weather Paris {"city":"Paris","unit":"celsius"}](get_current_weather call0001A) think=true level=high set=true"#
    );
    let unset = render_chat_full_at(&go_spec(template), &conversation(), true, PromptExtras::default(), NOW).unwrap();
    assert!(unset.text.ends_with(" think=false level= set=false"), "{}", unset.text);
}

#[test]
fn plain_format_teaches_tools_and_replays_calls() {
    let tools = tools();
    let out = render_chat_full_at(&TemplateSpec::default(), &tool_conversation(), true, PromptExtras { tools: Some(&tools), think: None }, NOW).unwrap();
    let expected = format!(
        "You are a helpful assistant.\n\nYou can call these tools (JSON schemas, one per line):\n{}\n\
         To call a tool, answer with <tool_call>\n{{\"name\": \"<tool name>\", \"arguments\": {{<arguments>}}}}\n</tool_call>\n\n\
         User: What is the weather in Paris?\n\
         Assistant: <tool_call>\n{{\"name\":\"get_current_weather\",\"arguments\":{{\"city\":\"Paris\",\"unit\":\"celsius\"}}}}\n</tool_call>\n\
         Tool: {{\"temperature\": 22, \"unit\": \"celsius\"}}\nAssistant:",
        serde_json::to_string(&tools[0]).unwrap()
    );
    assert_eq!(out.text, expected);
    assert_eq!(out.stop, vec!["\nUser:".to_string(), "\nTool:".to_string()]);
}
