//! Jinja chat templates: real models' templates against Hugging Face's rendering, the HF helper
//! globals, and the sandbox limits.

use super::*;

fn render_real(template: &str, bos: &str, eos: &str, messages: &[ChatMessage]) -> RenderedPrompt {
    let spec = jinja_spec(template, bos, eos);
    let out =
        render_chat_at(&spec, messages, true, NOW).unwrap_or_else(|e| panic!("render failed: {e}"));
    assert_eq!(out.format, PromptFormat::Jinja);
    assert!(out.stop.is_empty());
    out
}

fn render_str(template: &str, messages: &[ChatMessage]) -> Result<String, TemplateError> {
    render_chat_at(&jinja_spec(template, "<s>", "</s>"), messages, true, NOW).map(|r| r.text)
}

#[test]
fn llama3_instruct_matches_hf() {
    let out = render_real(
        include_str!("../testdata/jinja/llama3-instruct.jinja"),
        "<|begin_of_text|>",
        "<|eot_id|>",
        &conversation(),
    );
    assert_eq!(
        out.text,
        include_str!("../testdata/jinja/expected/llama3-instruct.txt")
    );
}

#[test]
fn llama31_instruct_matches_hf_with_todays_date() {
    let out = render_real(
        include_str!("../testdata/jinja/llama3.1-instruct.jinja"),
        "<|begin_of_text|>",
        "<|eot_id|>",
        &conversation(),
    );
    let expected = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
        Cutting Knowledge Date: December 2023\nToday Date: 15 Jan 2025\n\n\
        You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n\
        Hello, how are you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n\
        I'm doing great. How can I help you today?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n\
        I'd like to show off how chat templating works!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
    assert_eq!(out.text, expected);
    assert_eq!(
        out.text,
        include_str!("../testdata/jinja/expected/llama3.1-instruct.txt")
    );
}

#[test]
fn gemma3_it_matches_hf() {
    let out = render_real(
        include_str!("../testdata/jinja/gemma3-it.jinja"),
        "<bos>",
        "<eos>",
        &conversation(),
    );
    assert_eq!(
        out.text,
        include_str!("../testdata/jinja/expected/gemma3-it.txt")
    );
}

#[test]
fn gemma2_it_matches_hf_and_rejects_a_system_message() {
    let template = include_str!("../testdata/jinja/gemma2-it.jinja");
    let out = render_real(template, "<bos>", "<eos>", &conversation()[1..]);
    assert_eq!(
        out.text,
        include_str!("../testdata/jinja/expected/gemma2-it-no-system.txt")
    );

    let err = render_chat_at(
        &jinja_spec(template, "<bos>", "<eos>"),
        &conversation(),
        true,
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        err,
        TemplateError::Raised {
            format: PromptFormat::Jinja,
            message: "System role not supported".into()
        }
    );
    assert_eq!(err.to_string(), "the model's chat template (Jinja, from the GGUF file) rejected this conversation: System role not supported");
}

#[test]
fn qwen25_instruct_matches_hf() {
    let template = include_str!("../testdata/jinja/qwen2.5-instruct.jinja");
    let out = render_real(template, "", "<|im_end|>", &conversation());
    let expected = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
        <|im_start|>user\nHello, how are you?<|im_end|>\n\
        <|im_start|>assistant\nI'm doing great. How can I help you today?<|im_end|>\n\
        <|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n\
        <|im_start|>assistant\n";
    assert_eq!(out.text, expected);
    assert_eq!(
        out.text,
        include_str!("../testdata/jinja/expected/qwen2.5-instruct.txt")
    );

    // Without a system message the template supplies Qwen's own.
    let out = render_real(template, "", "<|im_end|>", &conversation()[1..2]);
    assert_eq!(
        out.text,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn mistral_nemo_matches_hf_and_enforces_alternation() {
    let template = include_str!("../testdata/jinja/mistral-nemo-instruct-2407.jinja");
    let out = render_real(template, "<s>", "</s>", &conversation());
    assert_eq!(
        out.text,
        include_str!("../testdata/jinja/expected/mistral-nemo-instruct-2407.txt")
    );

    let two_users = [ChatMessage::new("user", "a"), ChatMessage::new("user", "b")];
    match render_str(template, &two_users) {
        Err(TemplateError::Raised { message, .. }) => assert!(
            message.contains("must alternate user/assistant"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn phi3_mini_matches_hf_and_ends_with_eos_without_generation_prompt() {
    let template = include_str!("../testdata/jinja/phi3-mini-4k-instruct.jinja");
    let out = render_real(template, "<s>", "<|endoftext|>", &conversation());
    assert_eq!(
        out.text,
        include_str!("../testdata/jinja/expected/phi3-mini-4k-instruct.txt")
    );

    let spec = jinja_spec(template, "<s>", "<|endoftext|>");
    let out = render_chat_at(&spec, &conversation()[1..2], false, NOW).unwrap();
    assert_eq!(
        out.text,
        "<|user|>\nHello, how are you?<|end|>\n<|endoftext|>"
    );
}

#[test]
fn python_idioms_used_by_real_templates() {
    let template = r#"
{%- set ns = namespace(found=false, n=0) -%}
{%- for m in messages[1:] -%}
  {%- if loop.first %}[first:{{ m['role'] }}]{% endif -%}
  {%- set ns.n = ns.n + 1 -%}
  {%- if m.content.strip().startswith('Hello') %}{% set ns.found = true %}{% endif -%}
{%- endfor -%}
{{ ns.found }} {{ ns.n }} {{ messages[0]['content'] | trim }} {{ 'a,b,c'.split(',') | length }}
{%- for k, v in {'x': 1}.items() %} {{ k }}={{ v }}{% endfor %}
{{ undefined_thing is defined }} {{ tools is none }} {{ 'Hi'.upper() }} {{ messages | selectattr('role', 'equalto', 'user') | list | length }}
{%- for m in messages %}{% if m.role == 'assistant' %}{% break %}{% endif %}.{% endfor %}
{{ "x" ~ bos_token ~ eos_token }} {{ messages[-1].content[:4] }} {{ 'hello world'.title() }}"#;
    let msgs = [
        ChatMessage::new("system", "  sys  "),
        ChatMessage::new("user", " Hello there"),
        ChatMessage::new("assistant", "ok"),
        ChatMessage::new("user", "last"),
    ];
    assert_eq!(
        render_str(template, &msgs).unwrap(),
        // Verified with Python jinja2 set up like Hugging Face (booleans print Python-style).
        "[first:user]True 3 sys 3 x=1False True HI 2..x<s></s> last Hello World"
    );
}

#[test]
fn tojson_matches_python_json_dumps() {
    let template = r#"{{ {'name': 'f', 'args': {'q': 'a<b & "c"', 'n': [1, 2.5, true, none]}, 'e': [], 'u': 'é'} | tojson }}
{{ [1, {'a': 'b'}] | tojson(indent=2) }}
{{ {'b': 1, 'a': 2} | tojson(sort_keys=true, separators=[',', ':']) }} {{ 'line\nbreak' | tojson }} {{ 1.0 | tojson }} {{ 1e20 | tojson }}"#;
    let expected = concat!(
        r#"{"name": "f", "args": {"q": "a<b & \"c\"", "n": [1, 2.5, true, null]}, "e": [], "u": "é"}"#,
        "\n[\n  1,\n  {\n    \"a\": \"b\"\n  }\n]\n",
        r#"{"a":2,"b":1} "line\nbreak" 1.0 1e+20"#
    );
    assert_eq!(render_str(template, &conversation()).unwrap(), expected);
    assert_eq!(pyjson::python_float_repr(0.0001), "0.0001");
    assert_eq!(pyjson::python_float_repr(0.00001), "1e-05");
    assert_eq!(pyjson::python_float_repr(1e16), "1e+16");
    assert_eq!(
        pyjson::python_float_repr(123456789012345.6),
        "123456789012345.6"
    );
    assert_eq!(pyjson::python_float_repr(-1.5), "-1.5");
}

#[test]
fn helper_globals_use_the_clock() {
    let template = r#"{{ strftime_now("%Y-%m-%d %H:%M %b %A") }}|{{ date_string }}|{{ add_generation_prompt }}"#;
    assert_eq!(
        render_str(template, &conversation()).unwrap(),
        "2025-01-15 12:00 Jan Wednesday|15 Jan 2025|True"
    );
    let real_now = render_chat(
        &jinja_spec(r#"{{ strftime_now("%Y") }}"#, "", ""),
        &[],
        false,
    )
    .unwrap();
    assert_eq!(real_now.text.len(), 4);
}

#[test]
fn generation_tags_render_their_body() {
    let template =
        "{% for m in messages %}{%- generation -%} <{{ m.role }}> {%- endgeneration %}{% endfor %}";
    assert_eq!(
        render_str(template, &conversation()[..2]).unwrap(),
        "<system><user>"
    );
}

#[test]
fn syntax_errors_carry_the_line() {
    let err = render_str(
        "{% for m in messages %}\n{{ m.role }\n{% endfor %}",
        &conversation(),
    )
    .unwrap_err();
    match &err {
        TemplateError::Syntax {
            format: PromptFormat::Jinja,
            line: Some(2),
            message,
        } => {
            assert_eq!(message, "unexpected `}`, expected end of variable block")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().starts_with(
            "the model's chat template (Jinja, from the GGUF file) has a syntax error at line 2: "
        ),
        "{err}"
    );
}

#[test]
fn raise_exception_carries_the_message() {
    let template = "{% if messages|length > 1 %}{{ raise_exception('Only one message, please') }}{% endif %}ok";
    let err = render_str(template, &conversation()).unwrap_err();
    assert_eq!(
        err,
        TemplateError::Raised {
            format: PromptFormat::Jinja,
            message: "Only one message, please".into()
        }
    );
    assert_eq!(render_str(template, &conversation()[..1]).unwrap(), "ok");
}

#[test]
fn runtime_errors_are_render_errors() {
    let err = render_str("{{ messages[0].content.nosuchmethod() }}", &conversation()).unwrap_err();
    assert!(
        matches!(
            err,
            TemplateError::Render {
                format: PromptFormat::Jinja,
                line: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn endless_loops_run_out_of_fuel() {
    let template =
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    assert_eq!(
        render_str(template, &conversation()).unwrap_err(),
        TemplateError::FuelExhausted {
            format: PromptFormat::Jinja
        }
    );
    let recursive = "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}";
    assert!(render_str(recursive, &conversation()).is_err());
}

#[test]
fn memory_bombs_are_stopped() {
    let doubling = "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
    let err = render_str(doubling, &conversation()).unwrap_err();
    assert!(
        matches!(
            err,
            TemplateError::FuelExhausted { .. } | TemplateError::OutputTooLarge { .. }
        ),
        "{err:?}"
    );
    let repeat = "{{ 'x' * 1000000000 }}";
    assert!(render_str(repeat, &conversation()).is_err());
}

#[test]
fn huge_output_is_capped() {
    let template = "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}";
    let limit = Budget::for_messages(&conversation(), None).output_bytes;
    assert_eq!(
        render_str(template, &conversation()).unwrap_err(),
        TemplateError::OutputTooLarge {
            format: PromptFormat::Jinja,
            limit
        }
    );
    let indent = "{{ [1, 2, 3] | tojson(indent=100000000) }}";
    assert!(matches!(
        render_str(indent, &conversation()).unwrap_err(),
        TemplateError::OutputTooLarge { .. }
    ));
}

#[test]
fn long_conversations_fit_the_budget() {
    // 2,000 turns of 2 KB each through a real template: the budget scales with the input.
    let mut msgs = vec![ChatMessage::new("system", "s")];
    for i in 0..2000 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        msgs.push(ChatMessage::new(role, "y".repeat(2048)));
    }
    let out = render_real(
        include_str!("../testdata/jinja/llama3.1-instruct.jinja"),
        "<|begin_of_text|>",
        "<|eot_id|>",
        &msgs,
    );
    assert!(out.text.len() > 4_000_000);
}

#[test]
fn generation_tag_rewrite_keeps_everything_else() {
    assert_eq!(
        super::super::jinja::strip_generation_tags("a{%- generation +%}b{% endgeneration -%}c"),
        "a{%- if true +%}b{% endif -%}c"
    );
    assert_eq!(
        super::super::jinja::strip_generation_tags("a{% if x %}b{% generations"),
        "a{% if x %}b{% generations"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(50_000), ")".repeat(50_000));
    assert!(render_str(&parens, &conversation()).is_err());
    let ifs = "{% if true %}".repeat(5_000) + &"{% endif %}".repeat(5_000);
    assert!(render_str(&ifs, &conversation()).is_err());
    let lists = format!("{{{{ {}{} }}}}", "[".repeat(50_000), "]".repeat(50_000));
    assert!(render_str(&lists, &conversation()).is_err());
}

#[test]
fn many_short_turns_fit_the_budget() {
    let mut msgs = vec![ChatMessage::new("system", "s")];
    for i in 0..5000 {
        msgs.push(ChatMessage::new(
            if i % 2 == 0 { "user" } else { "assistant" },
            "ok",
        ));
    }
    for (template, bos, eos) in [
        (
            include_str!("../testdata/jinja/mistral-nemo-instruct-2407.jinja"),
            "<s>",
            "</s>",
        ),
        (
            include_str!("../testdata/jinja/gemma3-it.jinja"),
            "<bos>",
            "<eos>",
        ),
        (
            include_str!("../testdata/jinja/qwen2.5-instruct.jinja"),
            "",
            "<|im_end|>",
        ),
    ] {
        render_real(template, bos, eos, &msgs);
    }
}
