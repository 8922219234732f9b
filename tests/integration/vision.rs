//! Images: a `.gguf` imported with its vision projector (`--projector`), images through
//! `/api/chat`, `/api/generate` and `/v1/chat/completions` on the real test model, and the clear
//! 400s for a model without a projector and for images Airlock cannot read.
//!
//! The projector is tests/fixtures/make-test-projector.py's: llama.cpp's Gemma 3 layout, tiny and
//! untrained, so it sees nothing useful, but every image runs through llama.cpp's multimodal
//! library exactly as a real one: 16 image tokens between `<start_of_image>` and `<end_of_image>`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::api::{post, serve, Server};
use crate::common::*;
use crate::runner::Runner;
use airlock::engine::protocol::{GenerationStats, Request, SamplingOptions};

/// Tokens one image adds to a prompt: 16 image tokens and the two that frame them. (Beside text,
/// an image may add one more: the text on either side of it is tokenized apart.)
const IMAGE_PROMPT_TOKENS: u64 = 16 + 2;

/// Writes the test projector into `dir`.
pub(crate) fn test_projector(dir: &Path) -> PathBuf {
    let out = dir.join("mmproj-test.gguf");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make-test-projector.py");
    let status = Command::new("python3").arg(&script).arg(&out).stdout(std::process::Stdio::null()).status().expect("run python3");
    assert!(status.success(), "{} failed", script.display());
    out
}

/// A 24-bit BMP (stb_image reads it) of `w`×`h` pixels from `pixel(x, y)`.
fn bmp(w: u32, h: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let row = (w * 3).div_ceil(4) * 4;
    let size = 54 + row * h;
    let mut b = Vec::with_capacity(size as usize);
    b.extend_from_slice(b"BM");
    for v in [size, 0, 54, 40] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&(w as i32).to_le_bytes());
    b.extend_from_slice(&(h as i32).to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    for v in [0u32, row * h, 2835, 2835, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for y in (0..h).rev() {
        let start = b.len();
        for x in 0..w {
            let [r, g, bl] = pixel(x, y);
            b.extend_from_slice(&[bl, g, r]);
        }
        b.resize(start + row as usize, 0);
    }
    b
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Two images as unlike as they come: a red-to-blue gradient and a black-and-white checkerboard.
fn gradient() -> String {
    b64(&bmp(64, 48, |x, y| [(255 - x * 4) as u8, (y * 5) as u8, (x * 4) as u8]))
}

fn checkerboard() -> String {
    b64(&bmp(40, 40, |x, y| if (x / 5 + y / 5) % 2 == 0 { [255, 255, 255] } else { [0, 0, 0] }))
}

/// A store with the test model imported with its projector as `see:latest`, and without it as
/// `blind:latest`.
fn vision_store() -> TempDir {
    let store = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let projector = test_projector(work.path());
    let model = real_model();
    let out = airlock(store.path(), &["import", model.to_str().unwrap(), "--projector", projector.to_str().unwrap(), "--name", "see", "--link"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = airlock(store.path(), &["import", model.to_str().unwrap(), "--name", "blind", "--link"]);
    assert!(out.status.success(), "{}", stderr(&out));
    store
}

fn serve_store(store: &TempDir) -> Server {
    serve(&[("AIRLOCK_MODELS", store.path().to_str().unwrap())], false)
}

fn json_post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = post(server.port, path, &body.to_string(), "");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path} answered {status} with non-JSON: {text}")))
}

fn chat(server: &Server, model: &str, images: &[String]) -> (u16, Value) {
    json_post(server, "/api/chat", json!({
        "model": model, "stream": false,
        "messages": [{ "role": "user", "content": "Describe the picture.", "images": images }],
        "options": { "temperature": 0, "num_predict": 12 },
    }))
}

#[test]
fn a_gguf_imported_with_its_projector_reads_images_through_both_apis() {
    let store = vision_store();
    let server = serve_store(&store);

    let (status, show) = json_post(&server, "/api/show", json!({ "model": "see" }));
    assert_eq!(status, 200, "{show}");
    let caps = |v: &Value| v["capabilities"].as_array().unwrap().iter().filter_map(Value::as_str).map(str::to_string).collect::<Vec<_>>();
    assert!(caps(&show).contains(&"vision".to_string()), "{show}");
    let (_, blind_show) = json_post(&server, "/api/show", json!({ "model": "blind" }));
    assert!(!caps(&blind_show).contains(&"vision".to_string()), "{blind_show}");

    // The same prompt with and without an image: the image adds its tokens, and the reply
    // depends on which image it is (a cache that reused one image for another would not).
    let (status, plain) = chat(&server, "see", &[]);
    assert_eq!(status, 200, "{plain}");
    let (status, with_gradient) = chat(&server, "see", &[gradient()]);
    assert_eq!(status, 200, "{with_gradient}");
    let count = |v: &Value| v["prompt_eval_count"].as_u64().unwrap();
    let one_image = count(&with_gradient);
    assert!((count(&plain) + IMAGE_PROMPT_TOKENS..=count(&plain) + IMAGE_PROMPT_TOKENS + 1).contains(&one_image), "{plain} vs {with_gradient}");
    // A second image right beside the first adds exactly its tokens.
    let (status, two_images) = chat(&server, "see", &[gradient(), checkerboard()]);
    assert_eq!(status, 200, "{two_images}");
    assert_eq!(count(&two_images), one_image + IMAGE_PROMPT_TOKENS, "{two_images}");
    let (_, with_checkerboard) = chat(&server, "see", &[checkerboard()]);
    let (_, gradient_again) = chat(&server, "see", &[gradient()]);
    let reply = |v: &Value| v["message"]["content"].as_str().unwrap().to_string();
    assert_ne!(reply(&with_gradient), reply(&with_checkerboard), "two different images gave the same greedy reply");
    assert_eq!(reply(&with_gradient), reply(&gradient_again), "the same image gave two different greedy replies");
    assert!(with_checkerboard["eval_count"].as_u64().unwrap() > 0);

    // Two images in one message, and an image in a later turn of a conversation.
    let (status, two) = json_post(&server, "/api/chat", json!({
        "model": "see", "stream": false, "options": { "temperature": 0, "num_predict": 4 },
        "messages": [
            { "role": "user", "content": "First [img], then [img].", "images": [gradient(), checkerboard()] },
            { "role": "assistant", "content": "Two pictures." },
            { "role": "user", "content": "And this one?", "images": [checkerboard()] },
        ],
    }));
    assert_eq!(status, 200, "{two}");
    assert!(two["prompt_eval_count"].as_u64().unwrap() > 3 * IMAGE_PROMPT_TOKENS);

    // /api/generate: the image goes before the prompt.
    let generate = |images: Vec<String>| json_post(&server, "/api/generate", json!({ "model": "see", "prompt": "A picture of", "images": images, "stream": false, "options": { "temperature": 0, "num_predict": 4 } }));
    let (status, g_plain) = generate(vec![]);
    assert_eq!(status, 200, "{g_plain}");
    let (status, g_image) = generate(vec![gradient()]);
    assert_eq!(status, 200, "{g_image}");
    assert!(count(&g_image) >= count(&g_plain) + IMAGE_PROMPT_TOKENS, "{g_plain} vs {g_image}");

    // OpenAI: an image_url data URL, the same tokens as Ollama's images.
    let openai = |url: String| json_post(&server, "/v1/chat/completions", json!({
        "model": "see", "temperature": 0, "max_tokens": 12,
        "messages": [{ "role": "user", "content": [{ "type": "image_url", "image_url": { "url": url } }, { "type": "text", "text": "Describe the picture." }] }],
    }));
    let (status, completion) = openai(format!("data:image/bmp;base64,{}", gradient()));
    assert_eq!(status, 200, "{completion}");
    assert_eq!(completion["usage"]["prompt_tokens"].as_u64().unwrap(), one_image, "{completion}");
    assert_eq!(completion["choices"][0]["message"]["content"].as_str().unwrap(), reply(&with_gradient));

    // A URL to fetch is refused: the machine is offline by design.
    let (status, remote) = openai("https://example.com/cat.png".into());
    assert_eq!(status, 400, "{remote}");
    assert!(remote["error"]["message"].as_str().unwrap().contains("data: URL"), "{remote}");
}

#[test]
fn images_for_a_model_without_a_projector_or_that_cannot_be_read_get_a_clear_400() {
    let store = vision_store();
    let server = serve_store(&store);

    let (status, body) = chat(&server, "blind", &[gradient()]);
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("blind") && message.contains("no vision projector"), "{message}");
    let (status, body) = json_post(&server, "/api/generate", json!({ "model": "blind", "prompt": "x", "images": [gradient()] }));
    assert_eq!(status, 400, "{body}");
    let (status, body) = json_post(&server, "/v1/chat/completions", json!({
        "model": "blind", "messages": [{ "role": "user", "content": [{ "type": "image_url", "image_url": { "url": format!("data:image/bmp;base64,{}", gradient()) } }] }],
    }));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("blind"), "{body}");

    // Not base64, and base64 of something that is no image.
    let (status, body) = chat(&server, "see", &["%%% not base64 %%%".into()]);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("base64"), "{body}");
    let (status, body) = chat(&server, "see", &[b64(b"just some text, no picture")]);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("could not be decoded"), "{body}");
    // The runner is still there and still answers.
    let (status, body) = chat(&server, "see", &[checkerboard()]);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn import_refuses_a_projector_that_is_none_and_bundles_carry_the_projector() {
    let store = TempDir::new().unwrap();
    let model = real_model();
    // A model file is not a projector: refused before anything is copied.
    let out = airlock(store.path(), &["import", model.to_str().unwrap(), "--projector", model.to_str().unwrap(), "--name", "x", "--link"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not a vision projector"), "{}", stderr(&out));
    assert!(store_files(store.path()).is_empty(), "a refused import left files: {:?}", store_files(store.path()));

    let work = TempDir::new().unwrap();
    let projector = test_projector(work.path());
    let out = airlock(store.path(), &["import", model.to_str().unwrap(), "--projector", projector.to_str().unwrap(), "--name", "see", "--link"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let entry = airlock::store::Store::at(store.path()).resolve("see").unwrap();
    let layer = entry.manifest.layer(airlock::store::manifest::MEDIA_PROJECTOR).expect("a projector layer");
    assert_eq!(layer.size, std::fs::metadata(&projector).unwrap().len());

    // The exported bundle carries it, and a second store gets a model that still sees.
    let bundle = work.path().join("bundle");
    let out = airlock(store.path(), &["export", "see", "--out", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let far = TempDir::new().unwrap();
    let out = airlock(far.path(), &["import", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let far_entry = airlock::store::Store::at(far.path()).resolve("see").unwrap();
    assert_eq!(far_entry.manifest.layer(airlock::store::manifest::MEDIA_PROJECTOR).map(|l| l.digest), Some(layer.digest));
    assert_store_consistent(far.path());

    // A Modelfile's second FROM naming an mmproj file makes the projector layer, as in Ollama.
    let modelfile = work.path().join("Modelfile");
    std::fs::write(&modelfile, format!("FROM {}\nFROM {}\nPARAMETER temperature 0\n", model.display(), projector.display())).unwrap();
    let out = airlock(store.path(), &["create", "see-made", "-f", modelfile.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let made = airlock::store::Store::at(store.path()).resolve("see-made").unwrap();
    assert_eq!(made.manifest.layer(airlock::store::manifest::MEDIA_PROJECTOR).map(|l| l.digest), Some(layer.digest));
    std::fs::write(&modelfile, format!("FROM {}\nFROM {}\n", model.display(), model.display())).unwrap();
    let out = airlock(store.path(), &["create", "two-models", "-f", modelfile.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("vision projector"), "{}", stderr(&out));

    // A projector only goes with a single .gguf.
    let out = airlock(far.path(), &["import", bundle.to_str().unwrap(), "--projector", projector.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("single .gguf"), "{}", stderr(&out));
}

/// Greedy text and stats of `prompt` with `images`, from a runner started directly.
fn complete(runner: &mut Runner, prompt: &str, images: &[String]) -> (String, GenerationStats) {
    let id = runner.id();
    let options = SamplingOptions { temperature: Some(0.0), num_predict: Some(12), ..Default::default() };
    runner.send(&Request::Generate { id, prompt: prompt.into(), plain: Vec::new(), options, grammar: None, images: images.to_vec(), fixed_prefix: None });
    let (pieces, stats) = runner.collect(id).unwrap_or_else(|e| panic!("request {id}: {e:?}"));
    (pieces.concat(), stats)
}

#[test]
fn the_runner_reuses_an_images_cache_for_the_same_image_only() {
    let work = TempDir::new().unwrap();
    let projector = test_projector(work.path());
    let (mut runner, _) = Runner::start(&["--ctx", "1024", "--projector", projector.to_str().unwrap()]);
    // The prompt the chat API renders for "Describe the picture." with one image.
    let first = "User: <__media__>Describe the picture.\nAssistant:";
    let (gradient_reply, a) = complete(&mut runner, first, &[gradient()]);
    assert_eq!(a.prompt_cached_tokens, 0);
    // The next turn of the same conversation: the image's cache (and the text around it) is reused.
    let (_, b) = complete(&mut runner, &format!("{first}{gradient_reply}\nUser: And now?\nAssistant:"), &[gradient()]);
    assert!(b.prompt_cached_tokens as u64 > IMAGE_PROMPT_TOKENS + 4, "the follow-up reused {} of {} tokens", b.prompt_cached_tokens, b.prompt_tokens);
    // Another image at the same place: nothing from the first image is reused…
    let (checkerboard_reply, c) = complete(&mut runner, first, &[checkerboard()]);
    assert!(c.prompt_cached_tokens <= 5, "a different image reused {} tokens", c.prompt_cached_tokens);
    assert_ne!(checkerboard_reply, gradient_reply);
    // …and the first image again decodes afresh, to the same reply.
    let (again, d) = complete(&mut runner, first, &[gradient()]);
    assert!(d.prompt_cached_tokens <= 5, "{d:?}");
    assert_eq!(again, gradient_reply);
    // A prompt whose markers and images disagree is refused, and the runner goes on.
    let id = runner.id();
    runner.send(&Request::Generate { id, prompt: first.into(), plain: Vec::new(), options: Default::default(), grammar: None, images: vec![gradient(), gradient()], fixed_prefix: None });
    match runner.collect(id) {
        Err((code, message)) => assert!(code == "images" && message.contains("2 images"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(complete(&mut runner, first, &[gradient()]).0, gradient_reply);
}
