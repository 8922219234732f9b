//! Ollama Go templates: Ollama's own templates and expectations, its legacy mode, collation and
//! the limits.

use super::*;

macro_rules! ollama_case {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../testdata/ollama/", $name)),
            [
                include_str!(concat!("../testdata/ollama/expected/", $name, "/user")),
                include_str!(concat!(
                    "../testdata/ollama/expected/",
                    $name,
                    "/user-assistant-user"
                )),
                include_str!(concat!(
                    "../testdata/ollama/expected/",
                    $name,
                    "/system-user-assistant-user"
                )),
            ],
        )
    };
}

fn render_go(template: &str, messages: &[ChatMessage]) -> Result<String, TemplateError> {
    let out = render_chat_at(&go_spec(template), messages, true, NOW)?;
    assert_eq!(out.format, PromptFormat::GoTemplate);
    assert!(out.stop.is_empty());
    Ok(out.text)
}

fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
    pairs
        .iter()
        .map(|(r, c)| ChatMessage::new(*r, *c))
        .collect()
}

#[test]
fn ollama_templates_match_ollama_testdata() {
    let cases = [
        ollama_case!("alfred.gotmpl"),
        ollama_case!("alpaca.gotmpl"),
        ollama_case!("chatml.gotmpl"),
        ollama_case!("chatqa.gotmpl"),
        ollama_case!("codellama-70b-instruct.gotmpl"),
        ollama_case!("command-r.gotmpl"),
        ollama_case!("falcon-instruct.gotmpl"),
        ollama_case!("gemma-instruct.gotmpl"),
        ollama_case!("gemma3-instruct.gotmpl"),
        ollama_case!("granite-instruct.gotmpl"),
        ollama_case!("llama2-chat.gotmpl"),
        ollama_case!("llama3-instruct.gotmpl"),
        ollama_case!("magicoder.gotmpl"),
        ollama_case!("mistral-instruct.gotmpl"),
        ollama_case!("openchat.gotmpl"),
        ollama_case!("phi-3.gotmpl"),
        ollama_case!("solar-instruct.gotmpl"),
        ollama_case!("starcoder2-instruct.gotmpl"),
        ollama_case!("vicuna.gotmpl"),
        ollama_case!("zephyr.gotmpl"),
    ];
    let conv = conversation();
    let conversations: [&[ChatMessage]; 3] = [&conv[1..2], &conv[1..], &conv[..]];
    // Ollama's test drops one trailing space from these before comparing.
    let trailing_space = [
        "chatqa.gotmpl",
        "llama2-chat.gotmpl",
        "mistral-instruct.gotmpl",
        "openchat.gotmpl",
        "vicuna.gotmpl",
    ];
    for (name, template, expected) in cases {
        for (messages, want) in conversations.iter().zip(expected) {
            let mut got = render_go(template, messages).unwrap_or_else(|e| panic!("{name}: {e}"));
            if trailing_space.contains(&name) && got.ends_with(' ') {
                got.pop();
            }
            assert_eq!(got, want, "{name} with {} messages", messages.len());
        }
    }
}

#[test]
fn llama31_library_template() {
    let template = include_str!("../testdata/ollama/llama3.1-library.gotmpl");
    let expected = "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>\
        <|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>\
        <|start_header_id|>assistant<|end_header_id|>\n\nI'm doing great. How can I help you today?<|eot_id|>\
        <|start_header_id|>user<|end_header_id|>\n\nI'd like to show off how chat templating works!<|eot_id|>\
        <|start_header_id|>assistant<|end_header_id|>\n\n";
    assert_eq!(render_go(template, &conversation()).unwrap(), expected);
    // A trailing assistant message is continued, not closed.
    let prefill = msgs(&[("user", "Hi"), ("assistant", "Once upon")]);
    assert_eq!(
        render_go(template, &prefill).unwrap(),
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nOnce upon"
    );
}

/// Ollama's `TestExecuteWithMessages`: legacy `.Prompt/.Response` templates render turn by turn
/// and give the same text as their `.Messages` equivalents.
#[test]
fn legacy_templates_render_pairwise() {
    let mistral_legacy = [
        "[INST] {{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}[/INST] ",
        "[INST] {{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}[/INST] {{ .Response }}",
    ];
    let mistral_messages = "[INST] {{ if .System }}{{ .System }}\n{{ end }}\n{{- range .Messages }}\n{{- if eq .Role \"user\" }}{{ .Content }}[/INST] {{ else if eq .Role \"assistant\" }}{{ .Content }}[INST] {{ end }}\n{{- end }}";
    let chat = msgs(&[
        ("user", "Hello friend!"),
        ("assistant", "Hello human!"),
        ("user", "What is your name?"),
    ]);
    for t in mistral_legacy.iter().chain([&mistral_messages]) {
        assert_eq!(
            render_go(t, &chat).unwrap(),
            "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] ",
            "{t:?}"
        );
    }

    let mut with_system = msgs(&[("system", "You are a helpful assistant!")]);
    with_system.extend(chat.clone());
    for t in mistral_legacy.iter().chain([&mistral_messages]) {
        assert_eq!(
            render_go(t, &with_system).unwrap(),
            "[INST] You are a helpful assistant!\nHello friend![/INST] Hello human![INST] What is your name?[/INST] ",
            "{t:?}"
        );
    }

    let mut prefill = chat.clone();
    prefill.push(ChatMessage::new("assistant", "My name is Ollama and I"));
    let assistant_templates = [
        "[INST] {{ .Prompt }}[/INST] ",
        "[INST] {{ .Prompt }}[/INST] {{ .Response }}",
        "\n{{- range $i, $m := .Messages }}\n{{- if eq .Role \"user\" }}[INST] {{ .Content }}[/INST] {{ else if eq .Role \"assistant\" }}{{ .Content }}{{ end }}\n{{- end }}",
    ];
    for t in assistant_templates {
        assert_eq!(
            render_go(t, &prefill).unwrap(),
            "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is Ollama and I",
            "{t:?}"
        );
    }

    let chatml_legacy = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n";
    let chatml_messages = "\n{{- range $index, $_ := .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n";
    for t in [chatml_legacy, chatml_messages] {
        assert_eq!(
            render_go(t, &with_system).unwrap(),
            "<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n<|im_start|>user\nHello friend!<|im_end|>\n\
             <|im_start|>assistant\nHello human!<|im_end|>\n<|im_start|>user\nWhat is your name?<|im_end|>\n\
             <|im_start|>assistant\n",
            "{t:?}"
        );
    }
}

#[test]
fn collate_merges_consecutive_roles_but_not_tools() {
    let input = msgs(&[
        ("system", "A"),
        ("system", "B"),
        ("user", "Hello"),
        ("user", "How are you?"),
        ("tool", "sunny"),
        ("tool", "72F"),
    ]);
    let (system, collated) = super::super::ollama::collate(&input);
    assert_eq!(system, "A\n\nB");
    assert_eq!(
        collated,
        msgs(&[
            ("system", "A\n\nB"),
            ("user", "Hello\n\nHow are you?"),
            ("tool", "sunny"),
            ("tool", "72F")
        ])
    );
    let template = "{{ .System }}|{{ range .Messages }}{{ .Role }}={{ .Content }};{{ end }}";
    assert_eq!(
        render_go(template, &input).unwrap(),
        "A\n\nB|system=A\n\nB;user=Hello\n\nHow are you?;tool=sunny;tool=72F;"
    );
}

#[test]
fn go_template_errors_map_to_template_errors() {
    let err = render_go("line one\n{{ if .Messages }}", &conversation()).unwrap_err();
    assert!(
        matches!(
            err,
            TemplateError::Syntax {
                format: PromptFormat::GoTemplate,
                line: Some(2),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(
            "the model's Ollama template (Go text/template) has a syntax error at line 2: "
        ),
        "{err}"
    );

    let err = render_go(
        "{{ range .Messages }}\n{{ index .Content 99 }}{{ end }}",
        &conversation(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TemplateError::Render {
                format: PromptFormat::GoTemplate,
                line: Some(2),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn hostile_go_templates_hit_the_limits() {
    let spin = "{{ range .Messages }}{{ range $.Messages }}{{ range $.Messages }}{{ range 100000 }}{{ end }}{{ end }}{{ end }}{{ end }}";
    assert_eq!(
        render_go(spin, &conversation()).unwrap_err(),
        TemplateError::FuelExhausted {
            format: PromptFormat::GoTemplate
        }
    );
    let loud = "{{ range 1000000 }}{{ $.Messages }}{{ end }}";
    let limit = Budget::for_messages(&conversation(), None).output_bytes;
    assert_eq!(
        render_go(loud, &conversation()).unwrap_err(),
        TemplateError::OutputTooLarge {
            format: PromptFormat::GoTemplate,
            limit
        }
    );
}

#[test]
fn big_templates_parse_in_linear_time() {
    // 200k actions on 200k lines: a quadratic lexer would take many minutes (a hang guard, not a
    // timing: linear takes well under a second).
    let template = "{{ .Response }}\n".repeat(200_000) + "{{ range .Messages }}{{ end }}";
    let start = std::time::Instant::now();
    let out = render_go(&template, &conversation()).unwrap();
    assert_eq!(out, "\n".repeat(200_000));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(90),
        "{:?}",
        start.elapsed()
    );
}
