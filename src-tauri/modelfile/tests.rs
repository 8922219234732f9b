use serde_json::json;

use super::params::{go_f32, Applied, Parameters};
use super::parser::{parse, quote, Instruction};

fn instructions(text: &str) -> Vec<Instruction> {
    parse(text).unwrap().commands.into_iter().map(|c| c.instruction).collect()
}

#[test]
fn parses_every_instruction_case_insensitively() {
    let text = "# a comment\nfrom ./model.gguf\nParameter temperature 0.7\nPARAMETER stop <|im_end|>\nTEMPLATE {{ .Prompt }}\nsystem You are brief.\nMESSAGE user Hi there\nmessage assistant Hello!\nLICENSE MIT\nLICENSE Apache-2.0\nADAPTER ./lora.gguf\n";
    assert_eq!(
        instructions(text),
        vec![
            Instruction::From("./model.gguf".into()),
            Instruction::Parameter { name: "temperature".into(), value: "0.7".into() },
            Instruction::Parameter { name: "stop".into(), value: "<|im_end|>".into() },
            Instruction::Template("{{ .Prompt }}".into()),
            Instruction::System("You are brief.".into()),
            Instruction::Message { role: "user".into(), content: "Hi there".into() },
            Instruction::Message { role: "assistant".into(), content: "Hello!".into() },
            Instruction::License("MIT".into()),
            Instruction::License("Apache-2.0".into()),
            Instruction::Adapter("./lora.gguf".into()),
        ]
    );
    let lines: Vec<usize> = parse(text).unwrap().commands.iter().map(|c| c.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
}

#[test]
fn triple_quoted_blocks_span_lines_and_keep_their_inner_newlines() {
    let text = "FROM x\nSYSTEM \"\"\"\nYou are \"terse\".\n  Indented line.\n\"\"\"\nTEMPLATE \"\"\"{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}\"\"\"\nPARAMETER stop \"two words\"\nMESSAGE user \"\"\"multi\nline\"\"\"\n";
    let got = instructions(text);
    assert_eq!(got[1], Instruction::System("\nYou are \"terse\".\n  Indented line.\n".into()));
    assert_eq!(got[2], Instruction::Template("{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}".into()));
    assert_eq!(got[3], Instruction::Parameter { name: "stop".into(), value: "two words".into() });
    assert_eq!(got[4], Instruction::Message { role: "user".into(), content: "multi\nline".into() });
    // A single-quoted value may span lines too, as in Ollama.
    assert_eq!(instructions("FROM x\nSYSTEM \"a\nb\"\n")[1], Instruction::System("a\nb".into()));
    // CRLF files.
    assert_eq!(instructions("FROM x\r\nSYSTEM hi\r\n")[1], Instruction::System("hi".into()));
}

#[test]
fn errors_name_the_line() {
    let cases = [
        ("FROM x\nBOGUS value\n", 2, "unknown instruction"),
        ("FROM x\n\nMESSAGE robot hi\n", 3, "must be one of"),
        ("FROM x\nSYSTEM \"\"\"never\nclosed\n", 2, "never closed"),
        ("FROM x\nSYSTEM \"open\n", 2, "never closed"),
        ("FROM x\nTEMPLATE\n", 2, "needs a value"),
        ("FROM x\nPARAM-ETER x 1\n", 2, "unexpected"),
        ("# only a comment\nSYSTEM hi\n", 0, "no FROM"),
    ];
    for (text, line, needle) in cases {
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.message.contains(needle), "{text:?}: {e}");
    }
    assert!(parse("FROM x\nBOGUS value\n").unwrap_err().to_string().starts_with("line 2: "));
}

#[test]
fn parameters_are_typed_and_checked() {
    let mut p = Parameters::default();
    for (k, v) in [("temperature", "0.7"), ("top_k", "40"), ("use_mmap", "false"), ("stop", "<|im_end|>"), ("stop", "User:"), ("num_ctx", "8192"), ("seed", "-1")] {
        assert!(matches!(p.set_text(k, v), Ok(Applied::Set)), "{k}");
    }
    assert_eq!(String::from_utf8(p.to_layer_bytes()).unwrap(), "{\"num_ctx\":8192,\"seed\":-1,\"stop\":[\"\\u003c|im_end|\\u003e\",\"User:\"],\"temperature\":0.7,\"top_k\":40,\"use_mmap\":false}\n");
    assert!(p.set_text("temprature", "1").unwrap_err().contains("unknown parameter \"temprature\""));
    assert!(p.set_text("temperature", "hot").unwrap_err().contains("must be a number"));
    assert!(p.set_text("top_k", "4.5").unwrap_err().contains("whole number"));
    assert!(p.set_text("use_mmap", "maybe").unwrap_err().contains("true or false"));
    assert!(p.set_text("temperature", "NaN").is_err());
    assert!(matches!(p.set_text("mirostat", "2"), Ok(Applied::Ignored(_))));
    // From an API request.
    let mut q = Parameters::default();
    q.set_json("stop", &json!(["a", "b"])).unwrap();
    q.set_json("num_predict", &json!(64.0)).unwrap();
    assert!(q.set_json("top_k", &json!("40")).is_err());
    assert!(q.set_json("top_k", &json!(1.5)).is_err());
    assert!(q.set_json("nope", &json!(1)).is_err());
    assert_eq!(q.lines(), vec![("num_predict".into(), "64".into()), ("stop".into(), "a".into()), ("stop".into(), "b".into())]);
}

#[test]
fn flash_attention_and_the_kv_cache_type_are_model_parameters() {
    let mut p = Parameters::default();
    p.set_text("kv_cache_type", "Q8_0").unwrap();
    p.set_text("flash_attention", "1").unwrap();
    let layer = String::from_utf8(p.to_layer_bytes()).unwrap();
    assert_eq!(layer, "{\"flash_attention\":\"on\",\"kv_cache_type\":\"q8_0\"}\n");
    assert_eq!(crate::engine::attention::from_params(&layer), (Some(crate::engine::attention::FlashAttention::On), Some(crate::engine::attention::KvCacheType::Q8_0)));
    assert!(p.set_text("kv_cache_type", "q5_1").unwrap_err().contains("f16, q8_0 or q4_0"));
    assert!(p.set_json("flash_attention", &json!(false)).is_ok() && p.set_json("kv_cache_type", &json!(8)).is_err());
}

#[test]
fn params_merge_over_the_base_key_by_key() {
    let base = Parameters::from_layer(r#"{"stop":["<end>"],"temperature":0.2,"top_k":20}"#).unwrap();
    let mut own = Parameters::default();
    own.set_text("temperature", "0.9").unwrap();
    let merged = own.over(&base);
    assert_eq!(String::from_utf8(merged.to_layer_bytes()).unwrap(), "{\"stop\":[\"\\u003cend\\u003e\"],\"temperature\":0.9,\"top_k\":20}\n");
}

#[test]
fn floats_print_like_go() {
    assert_eq!(go_f32(0.7), "0.7");
    assert_eq!(go_f32(1.0), "1");
    assert_eq!(go_f32(1.1), "1.1");
    assert_eq!(go_f32(1e-7), "1e-7");
    assert_eq!(go_f32(2e21), "2e+21");
    assert_eq!(go_f32(100000.0), "100000");
}

#[test]
fn quoted_values_read_back_unchanged() {
    for v in ["plain", " leading", "trailing ", "multi\nline", "has \"quotes\"\nand lines", "\"starts quoted\"", "", "{{ .Prompt }}\n"] {
        let text = format!("FROM x\nSYSTEM {}\n", quote(v));
        assert_eq!(instructions(&text)[1], Instruction::System(v.into()), "{v:?} → {text:?}");
    }
}
