//! Speculative decoding on the real test model: a draft (here the model itself, which proves
//! identity cheaply; `bench/speculative.sh` runs the real Qwen2.5-Coder pair) changes no token of
//! a greedy reply, reports what it proposed and what was kept, and a draft with another
//! vocabulary is refused before anything is written or loaded.

use std::fs;
use std::path::PathBuf;

use airlock::bundle::{import, ImportOptions};
use airlock::core::Core;
use airlock::engine::chat::RequestSettings;
use airlock::engine::protocol::{GenerationStats, SamplingOptions};
use airlock::engine::supervisor::StreamEvent;
use airlock::engine::template::ChatMessage;
use airlock::progress::NoProgress;
use airlock::store::Store;
use tempfile::TempDir;

use crate::common::*;
use crate::engine::{config, store_with_real_model};
use crate::modelfile::{http, serve_store};

fn reply(core: &Core, name: &str, prompt: &str, settings: RequestSettings) -> (String, GenerationStats) {
    let model = core.prepare(name).unwrap();
    let mut text = String::new();
    for ev in core.engine().chat(&model, &[ChatMessage::new("user", prompt)], settings).unwrap().generation {
        match ev {
            StreamEvent::Piece(p) => text.push_str(&p),
            StreamEvent::Done(stats) => return (text, stats),
            StreamEvent::Error(e) => panic!("{name}: {e}"),
        }
    }
    panic!("{name}: the reply ended without Done")
}

fn settings(temperature: f32, draft: Option<&str>) -> RequestSettings {
    RequestSettings {
        options: SamplingOptions { temperature: Some(temperature), seed: Some(7), num_predict: Some(48), ..Default::default() },
        num_ctx: Some(1024),
        draft: draft.map(str::to_string),
        ..Default::default()
    }
}

fn create(store: &std::path::Path, name: &str, modelfile: &str) -> std::process::Output {
    let work = TempDir::new().unwrap();
    let path = work.path().join("Modelfile");
    fs::write(&path, modelfile).unwrap();
    airlock(store, &["create", name, "-f", &path.display().to_string()])
}

#[test]
fn a_draft_changes_no_token_of_a_greedy_reply() {
    let dir = store_with_real_model();
    let out = create(dir.path(), "gemma3:drafted", "FROM gemma3:270m\nDRAFT gemma3:270m\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&airlock(dir.path(), &["show", "gemma3:drafted", "--modelfile"]));
    assert!(shown.contains("\nDRAFT "), "{shown}");
    let core = Core::new(Store::at(dir.path()), config());
    let prompts = ["Write a Python function that reverses a list.", "Tell me a short story about a lighthouse keeper.", "List the planets of the solar system."];
    let (mut drafted_total, mut kept_total) = (0, 0);
    for prompt in prompts {
        let (alone, plain) = reply(&core, "gemma3:270m", prompt, settings(0.0, None));
        // The model's own DRAFT, and the same draft named by a request.
        let (drafted, stats) = reply(&core, "gemma3:drafted", prompt, settings(0.0, None));
        let (asked, asked_stats) = reply(&core, "gemma3:270m", prompt, settings(0.0, Some("gemma3:270m")));
        // An unsure draft (the story) may propose nothing: it is then asked less often.
        println!("greedy, {prompt:?}: {} tokens, {}/{} drafted tokens kept", stats.eval_tokens, stats.draft_accepted, stats.draft_tokens);
        assert_eq!(drafted, alone, "the draft changed the reply");
        assert_eq!(asked, alone, "the requested draft changed the reply");
        assert_eq!((stats.eval_tokens, asked_stats.eval_tokens), (plain.eval_tokens, plain.eval_tokens));
        assert_eq!(plain.draft_tokens, 0);
        drafted_total += stats.draft_tokens;
        kept_total += stats.draft_accepted;
        // `""` turns the model's own draft off.
        let (off, off_stats) = reply(&core, "gemma3:drafted", prompt, settings(0.0, Some("")));
        assert_eq!((off.as_str(), off_stats.draft_tokens), (alone.as_str(), 0));
    }
    // A model drafting for itself is almost always right (its two contexts may break a near tie
    // differently now and then).
    assert!(drafted_total > 0 && kept_total * 10 >= drafted_total * 8, "{kept_total} of {drafted_total} drafted tokens kept");
    // Sampling: the model's own sampler still picks each token, a drafted one kept when it is
    // the pick.
    let (text, sampled) = reply(&core, "gemma3:drafted", prompts[1], settings(0.8, None));
    println!("sampled: {}/{} drafted tokens kept: {text:?}", sampled.draft_accepted, sampled.draft_tokens);
    assert!(!text.is_empty() && sampled.draft_tokens > 0, "{sampled:?}");
    core.shutdown();
}

#[test]
fn a_draft_with_another_vocabulary_is_refused_with_the_reason() {
    let dir = store_with_real_model();
    let qwen = PathBuf::from(std::env::var_os("AIRLOCK_INSTRUCT_MODEL").expect("AIRLOCK_INSTRUCT_MODEL must name Qwen2.5-Coder 0.5B (tests/fixtures/fetch-test-model.sh instruct)"));
    let opts = ImportOptions { name: Some("qwen:0.5b".into()), link: true, ..Default::default() };
    import(&Store::at(dir.path()), &qwen, &opts, &NoProgress).unwrap();
    let before = snapshot(dir.path());
    // At create time, from the store and from a file; nothing is written.
    for draft in ["qwen:0.5b".to_string(), qwen.display().to_string()] {
        let out = create(dir.path(), "gemma3:mixed", &format!("FROM gemma3:270m\nDRAFT {draft}\n"));
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains("cannot draft for this model") && err.contains("tokenizers differ"), "{err}");
        assert_eq!(snapshot(dir.path()), before, "a refused create wrote to the store");
    }
    // Named by a request: refused before a runner starts, with a 400 over the API.
    let core = Core::new(Store::at(dir.path()), config());
    let model = core.prepare("gemma3:270m").unwrap();
    let err = core.engine().chat(&model, &[ChatMessage::new("user", "Hi")], settings(0.0, Some("qwen:0.5b"))).err().expect("refused");
    assert!(err.to_string().contains("qwen:0.5b cannot draft for this model"), "{err}");
    assert_eq!(core.engine().supervisor.runner_starts(), 0);
    let server = serve_store(dir.path());
    let body = r#"{"model":"gemma3:270m","prompt":"Hi","stream":false,"options":{"draft":"qwen:0.5b"}}"#;
    let (status, text) = http(server.1, "POST", "/api/generate", "Content-Type: application/json\r\n", body.as_bytes());
    assert!(status == 400 && text.contains("cannot draft"), "{status} {text}");
    let body = r#"{"model":"gemma3:270m","prompt":"Hi","stream":false,"options":{"draft":"missing:1"}}"#;
    let (status, text) = http(server.1, "POST", "/api/generate", "Content-Type: application/json\r\n", body.as_bytes());
    assert!((400..500).contains(&status) && text.contains("missing:1"), "{status} {text}");
    // The final chunk reports what the draft did.
    let body = r#"{"model":"gemma3:270m","prompt":"Count to five.","stream":false,"options":{"draft":"gemma3:270m","temperature":0,"num_predict":16,"num_ctx":1024}}"#;
    let (status, text) = http(server.1, "POST", "/api/generate", "Content-Type: application/json\r\n", body.as_bytes());
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status} {text}"));
    println!("final chunk: {json}");
    assert!(json["draft_count"].as_u64().unwrap() > 0 && json["draft_acceptance_rate"].as_f64().unwrap() > 0.0, "{json}");
}
