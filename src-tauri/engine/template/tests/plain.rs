//! The plain format, format selection and `render_generate`.

use super::*;

#[test]
fn plain_chat_format() {
    let spec = TemplateSpec::default();
    let out = render_chat_at(&spec, &conversation(), true, NOW).unwrap();
    assert_eq!(
        out,
        RenderedPrompt {
            text: "You are a helpful assistant.\n\nUser: Hello, how are you?\n\
                   Assistant: I'm doing great. How can I help you today?\n\
                   User: I'd like to show off how chat templating works!\nAssistant:"
                .into(),
            format: PromptFormat::Plain,
            stop: vec!["\nUser:".into()],
        }
    );
    let out = render_chat_at(&spec, &conversation()[1..3], false, NOW).unwrap();
    assert_eq!(
        out.text,
        "User: Hello, how are you?\nAssistant: I'm doing great. How can I help you today?"
    );
    assert_eq!(
        render_chat_at(&spec, &[], true, NOW).unwrap().text,
        "Assistant:"
    );
    let tool = [
        ChatMessage::new("tool", "42"),
        ChatMessage::new("critic", "meh"),
    ];
    assert_eq!(
        render_chat_at(&spec, &tool, false, NOW).unwrap().text,
        "Tool: 42\ncritic: meh"
    );
}

#[test]
fn blank_templates_count_as_absent() {
    let spec = TemplateSpec {
        gguf_chat_template: Some("  \n"),
        ollama_template: Some(""),
        ..Default::default()
    };
    assert_eq!(
        render_chat(&spec, &conversation(), true).unwrap().format,
        PromptFormat::Plain
    );
}

#[test]
fn jinja_wins_over_go_and_broken_jinja_falls_back_to_go() {
    let jinja = "{% for m in messages %}J:{{ m.content }};{% endfor %}";
    let go = "{{ range .Messages }}G:{{ .Content }};{{ end }}";
    let both = TemplateSpec {
        gguf_chat_template: Some(jinja),
        ollama_template: Some(go),
        ..Default::default()
    };
    let out = render_chat_at(&both, &conversation()[1..2], true, NOW).unwrap();
    assert_eq!(
        (out.text.as_str(), out.format),
        ("J:Hello, how are you?;", PromptFormat::Jinja)
    );

    let broken = TemplateSpec {
        gguf_chat_template: Some("{% for m in messages %}"),
        ..both
    };
    let out = render_chat_at(&broken, &conversation()[1..2], true, NOW).unwrap();
    assert_eq!(
        (out.text.as_str(), out.format),
        ("G:Hello, how are you?;", PromptFormat::GoTemplate)
    );

    // A template's deliberate refusal is not papered over.
    let refusing = TemplateSpec {
        gguf_chat_template: Some("{{ raise_exception('no') }}"),
        ..both
    };
    assert!(matches!(
        render_chat_at(&refusing, &conversation(), true, NOW),
        Err(TemplateError::Raised { .. })
    ));

    let broken_alone = TemplateSpec {
        gguf_chat_template: Some("{% for m in messages %}"),
        ..Default::default()
    };
    assert!(matches!(
        render_chat_at(&broken_alone, &conversation(), true, NOW),
        Err(TemplateError::Syntax { .. })
    ));
}

#[test]
fn generate_plain_is_the_raw_prompt() {
    let spec = TemplateSpec::default();
    let out = render_generate_at(&spec, None, "The capital of France is", NOW).unwrap();
    assert_eq!(
        out,
        RenderedPrompt {
            text: "The capital of France is".into(),
            format: PromptFormat::Plain,
            stop: vec![]
        }
    );
    let out = render_generate_at(&spec, Some("Be terse."), "Why?", NOW).unwrap();
    assert_eq!(out.text, "Be terse.\n\nWhy?");
    assert_eq!(
        render_generate_at(&spec, Some(""), "Why?", NOW)
            .unwrap()
            .text,
        "Why?"
    );
}

#[test]
fn generate_with_templates_is_a_system_user_chat() {
    let spec = jinja_spec(
        include_str!("../testdata/jinja/llama3-instruct.jinja"),
        "<|begin_of_text|>",
        "<|eot_id|>",
    );
    let out = render_generate_at(&spec, Some("Be terse."), "Why?", NOW).unwrap();
    assert_eq!(
        out.text,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe terse.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nWhy?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let out = render_generate_at(&spec, None, "Why?", NOW).unwrap();
    assert_eq!(
        out.text,
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhy?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );

    let chatml = include_str!("../testdata/ollama/chatml.gotmpl");
    let out = render_generate_at(&go_spec(chatml), Some("Be terse."), "Why?", NOW).unwrap();
    assert_eq!(out.format, PromptFormat::GoTemplate);
    assert_eq!(out.text, "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n");

    let legacy = "{{ if .System }}<<{{ .System }}>>{{ end }}[INST] {{ .Prompt }} [/INST]";
    let out = render_generate_at(&go_spec(legacy), Some("S"), "P", NOW).unwrap();
    assert_eq!(out.text, "<<S>>[INST] P [/INST]");
}
