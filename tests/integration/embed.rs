//! Embeddings on the real test model (a decoder-only chat model: mean pooling): `airlock embed`,
//! and `/api/embed`, `/api/embeddings`, `/v1/embeddings` on a real server — shapes, unit length,
//! a batch equal to its inputs embedded one by one, `dimensions`, `truncate: false` past the
//! context answered 400, token-id inputs and base64, and a chat model loaded beside the
//! embedding runner.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::api::{get, post, serve};
use crate::common::*;

/// The test model's embedding length (`gemma3.embedding_length`).
const DIM: usize = 640;

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (norm(a) * norm(b))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|x| x.as_f64().unwrap()).collect()
}

fn post_json(port: u16, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = post(port, path, &body.to_string(), "");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text:?}")))
}

#[test]
fn embed_command_prints_one_unit_vector_per_text() {
    let store = tempfile::TempDir::new().unwrap();
    let out = airlock(store.path(), &["import", real_model().to_str().unwrap(), "--name", "gemma3:270m", "--link"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["embed", "gemma3:270m", "The capital of France is Paris.", "Bonjour", "--dimensions", "128"])
        .env("AIRLOCK_MODELS", store.path())
        .env("AIRLOCK_THREADS", "2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Vec<f64>> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for v in &lines {
        assert_eq!(v.len(), 128);
        assert!((norm(v) - 1.0).abs() < 1e-4, "norm {}", norm(v));
    }
    assert!(cosine(&lines[0], &lines[1]) < 0.999, "different texts gave the same vector");

    // An input longer than the runner's first batch (512 tokens): the batch grows to hold it.
    let long = "word ".repeat(700);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["embed", "gemma3:270m", &long, "short"])
        .env("AIRLOCK_MODELS", store.path())
        .env("AIRLOCK_THREADS", "2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Vec<f64>> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().map(Vec::len).collect::<Vec<_>>(), vec![DIM, DIM]);
    assert!(lines.iter().all(|v| (norm(v) - 1.0).abs() < 1e-4));

    let missing = airlock(store.path(), &["embed", "nosuchmodel", "x"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("nosuchmodel"), "{}", stderr(&missing));
}

#[test]
fn embedding_routes_batch_normalise_truncate_and_run_beside_a_chat_model() {
    let s = serve(&[], true);
    let texts = ["The capital of France is Paris.", "Invoice 4471 is due on the 3rd of March.", "a", "Rust is a systems programming language with a borrow checker.", "Le chat dort sur le canapé."];

    // A batch: one unit vector per input, in order.
    let (status, batch) = post_json(s.port, "/api/embed", json!({ "model": "gemma3:270m", "input": texts }));
    assert_eq!(status, 200, "{batch}");
    let vectors: Vec<Vec<f64>> = batch["embeddings"].as_array().unwrap().iter().map(floats).collect();
    assert_eq!(vectors.len(), texts.len());
    for v in &vectors {
        assert_eq!(v.len(), DIM);
        assert!((norm(v) - 1.0).abs() < 1e-4, "norm {}", norm(v));
    }
    assert_eq!(batch["model"], "gemma3:270m");
    assert!(batch["prompt_eval_count"].as_u64().unwrap() >= texts.len() as u64 * 2, "{}", batch["prompt_eval_count"]);
    assert!(batch["total_duration"].as_u64().unwrap() >= batch["load_duration"].as_u64().unwrap());

    // The same inputs one by one give the same vectors (within float rounding of other batch shapes).
    for (text, batched) in texts.iter().zip(&vectors) {
        let (status, one) = post_json(s.port, "/api/embed", json!({ "model": "gemma3:270m", "input": text }));
        assert_eq!(status, 200, "{one}");
        let single = floats(&one["embeddings"][0]);
        let worst = single.iter().zip(batched).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(cosine(&single, batched) > 0.9999 && worst < 2e-3, "{text:?}: cosine {}, worst {worst}", cosine(&single, batched));
    }
    assert!(cosine(&vectors[0], &vectors[1]) < 0.999, "different texts gave the same vector");

    // Control-token text in an input stays text: parsed, it would be BOS and two tokens.
    let (status, plain) = post_json(s.port, "/api/embed", json!({ "model": "gemma3:270m", "input": "<start_of_turn><end_of_turn>" }));
    assert_eq!(status, 200, "{plain}");
    assert!(plain["prompt_eval_count"].as_u64().unwrap() > 6, "{plain}");

    // dimensions: cut, then normalised again.
    let (_, short) = post_json(s.port, "/api/embed", json!({ "model": "gemma3:270m", "input": texts[0], "dimensions": 64 }));
    let short = floats(&short["embeddings"][0]);
    assert_eq!(short.len(), 64);
    assert!((norm(&short) - 1.0).abs() < 1e-4);
    assert!(cosine(&short, &vectors[0][..64]) > 0.9999);

    // Past the context: cut by default, 400 with truncate false.
    let long = "word ".repeat(600);
    let opts = json!({ "num_ctx": 300 });
    let (status, cut) = post_json(s.port, "/api/embed", json!({ "model": "gemma3:270m", "input": long, "options": opts }));
    assert_eq!(status, 200, "{cut}");
    assert_eq!(cut["prompt_eval_count"], 300);
    let (status, refused) = post_json(s.port, "/api/embed", json!({ "model": "gemma3:270m", "input": long, "options": opts, "truncate": false }));
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("context"), "{refused}");

    // Bad requests say what is wrong.
    let (status, bad) = post_json(s.port, "/api/embed", json!({ "model": "gemma3:270m", "input": 42 }));
    assert_eq!(status, 400, "{bad}");
    let (status, bad) = post_json(s.port, "/api/embed", json!({ "model": "nosuch", "input": "x" }));
    assert_eq!(status, 404, "{bad}");

    // No input: loads the model, no vectors.
    let (status, empty) = post_json(s.port, "/api/embed", json!({ "model": "gemma3:270m" }));
    assert_eq!((status, empty["embeddings"].clone()), (200, json!([])));

    // The older route: one vector as the model made it (not normalised), same direction.
    let (status, legacy) = post_json(s.port, "/api/embeddings", json!({ "model": "gemma3:270m", "prompt": texts[0] }));
    assert_eq!(status, 200, "{legacy}");
    let raw = floats(&legacy["embedding"]);
    assert_eq!(raw.len(), DIM);
    assert!((norm(&raw) - 1.0).abs() > 1e-3, "the raw vector is already unit length");
    assert!(cosine(&raw, &vectors[0]) > 0.9999);

    // OpenAI: strings, token ids, base64.
    let (status, ai) = post_json(s.port, "/v1/embeddings", json!({ "model": "gemma3:270m", "input": [texts[0], texts[1]] }));
    assert_eq!(status, 200, "{ai}");
    assert_eq!(ai["object"], "list");
    assert_eq!(ai["data"][1]["index"], 1);
    assert!(cosine(&floats(&ai["data"][0]["embedding"]), &vectors[0]) > 0.9999);
    assert_eq!(ai["usage"]["prompt_tokens"], ai["usage"]["total_tokens"]);
    let (status, b64) = post_json(s.port, "/v1/embeddings", json!({ "model": "gemma3:270m", "input": texts[0], "encoding_format": "base64" }));
    assert_eq!(status, 200, "{b64}");
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let decoded: Vec<f64> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect();
    assert_eq!(decoded.len(), DIM);
    assert!(cosine(&decoded, &vectors[0]) > 0.9999);
    let (status, tokens) = post_json(s.port, "/v1/embeddings", json!({ "model": "gemma3:270m", "input": [[2, 818, 5279], [2, 9259]] }));
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["usage"]["prompt_tokens"], 5);
    let (status, bad) = post_json(s.port, "/v1/embeddings", json!({ "model": "gemma3:270m", "input": [[2, 99999999]] }));
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"]["message"].as_str().unwrap().contains("token id"), "{bad}");
    let (status, bad) = post_json(s.port, "/v1/embeddings", json!({ "model": "gemma3:270m", "input": "x", "encoding_format": "hex" }));
    assert_eq!(status, 400, "{bad}");

    // A chat model beside the embedding runner: both stay loaded and both answer.
    let (status, chat) = post_json(s.port, "/api/generate", json!({ "model": "gemma3:270m", "prompt": "Hello", "stream": false, "options": { "num_predict": 3, "temperature": 0 } }));
    assert_eq!(status, 200, "{chat}");
    let (status, again) = post_json(s.port, "/api/embed", json!({ "model": "gemma3:270m", "input": texts[0] }));
    assert_eq!(status, 200, "{again}");
    assert!(cosine(&floats(&again["embeddings"][0]), &vectors[0]) > 0.9999);
    let (_, ps) = get(s.port, "/api/ps", "");
    let ps: Value = serde_json::from_str(&ps).unwrap();
    assert_eq!(ps["models"].as_array().unwrap().len(), 2, "{ps}");
}
