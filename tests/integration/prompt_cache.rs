//! The prompt cache across restarts, on the real test model: the first runner saves the state of
//! a long system prompt once idle (its reply decoded as without the cache), the next one starts
//! from it (the prefix not decoded again), only the prefix is written, and a damaged file is
//! discarded and written afresh; a runner stopped in the middle of a reply saves its prefix as it
//! exits; a model with a LoRA adapter saves its prefix decoded with the adapter.

use std::fs;
use std::path::{Path, PathBuf};

use airlock::core::Core;
use airlock::engine::chat::RequestSettings;
use airlock::engine::protocol::{GenerationStats, SamplingOptions};
use airlock::engine::supervisor::{EngineConfig, StreamEvent};
use airlock::engine::template::ChatMessage;
use airlock::store::Store;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::engine::{config, store_with_real_model};

fn system_prompt() -> String {
    rules(30)
}

fn rules(n: u32) -> String {
    let rules: Vec<String> = (1..=n).map(|i| format!("Rule {i}: berth {i} takes ships of at most {} metres and closes at {}:00.", 80 + i * 5, 16 + i % 6)).collect();
    format!("You are the assistant of the harbour office. Answer from these rules only.\n{}", rules.join("\n"))
}

fn ask(core: &Core, question: &str) -> (String, GenerationStats) {
    ask_model(core, "gemma3:270m", question)
}

fn ask_model(core: &Core, name: &str, question: &str) -> (String, GenerationStats) {
    let messages = [ChatMessage::new("system", system_prompt()), ChatMessage::new("user", question)];
    ask_with(core, name, &messages, greedy(24))
}

fn greedy(num_predict: i32) -> RequestSettings {
    RequestSettings { options: SamplingOptions { temperature: Some(0.0), num_predict: Some(num_predict), ..Default::default() }, num_ctx: Some(2048), ..Default::default() }
}

/// The whole reply of `name` to `messages`, and its stats.
fn ask_with(core: &Core, name: &str, messages: &[ChatMessage], settings: RequestSettings) -> (String, GenerationStats) {
    let model = core.prepare(name).unwrap();
    let mut text = String::new();
    for ev in core.engine().chat(&model, messages, settings).unwrap().generation {
        match ev {
            StreamEvent::Piece(p) => text.push_str(&p),
            StreamEvent::Done(stats) => return (text, stats),
            StreamEvent::Error(e) => panic!("{e}"),
        }
    }
    panic!("no Done")
}

fn saved(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "kv")).collect();
    files.sort();
    files
}

/// Waits (a minute at most) until the cache holds `n` complete files.
fn wait_for_files(dir: &Path, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while saved(dir).iter().filter(|f| f.with_extension("sha256").is_file()).count() < n {
        assert!(std::time::Instant::now() < deadline, "the prefix was not saved: {:?}", saved(dir));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The token count llama.cpp's sequence-state file holds (magic, version, count, …).
fn tokens_in(file: &Path) -> u32 {
    let bytes = fs::read(file).unwrap();
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

#[test]
fn a_saved_prefix_is_restored_after_a_restart_and_a_damaged_one_is_discarded() {
    let dir = store_with_real_model();
    let cache = TempDir::new().unwrap();
    let with_cache = || Core::new(Store::at(dir.path()), EngineConfig { prompt_cache: Some(cache.path().to_path_buf()), ..config() });
    let question = "Which berth takes a ship of 150 metres?";

    let plain = Core::new(Store::at(dir.path()), config());
    let (reference, _) = ask(&plain, question);
    plain.shutdown();

    // The first runner decodes the system prompt and saves its state: the prefix only.
    let core = with_cache();
    let (first, cold) = ask(&core, question);
    assert_eq!(first, reference, "the prompt is decoded as without the cache");
    assert_eq!(cold.prompt_cached_tokens, 0);
    // The prefix is saved once the runner is idle.
    wait_for_files(cache.path(), 1);
    core.shutdown();
    let files = saved(cache.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let prefix = tokens_in(&files[0]);
    assert!(prefix >= 300 && prefix + 10 < cold.prompt_tokens, "saved {prefix} of {} prompt tokens: the question must not be in it", cold.prompt_tokens);

    // After a restart the first turn starts from the saved prefix.
    let core = with_cache();
    let (again, warm) = ask(&core, question);
    println!("cold: {cold:?}\nwarm: {warm:?}\nreplies: {reference:?} / {again:?}");
    assert!(!again.is_empty());
    assert_eq!(warm.prompt_cached_tokens, prefix);
    core.shutdown();

    // A damaged file is discarded: the prefix is decoded (as without the cache) and saved again.
    let mut bytes = fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(&files[0], &bytes).unwrap();
    let core = with_cache();
    let (after, damaged) = ask(&core, question);
    assert_eq!(after, reference);
    assert_eq!(damaged.prompt_cached_tokens, 0, "a damaged file was used");
    wait_for_files(cache.path(), 1);
    core.shutdown();
    let rewritten = fs::read(&files[0]).unwrap();
    let sum = fs::read_to_string(files[0].with_extension("sha256")).unwrap();
    assert_eq!(format!("{:x}", Sha256::digest(&rewritten)), sum.trim(), "the prefix was not saved again");

    // Other cache settings make another file; they never read this one.
    let q8 = Core::new(Store::at(dir.path()), EngineConfig { prompt_cache: Some(cache.path().to_path_buf()), kv_cache_type: airlock::engine::attention::KvCacheType::Q8_0, ..config() });
    let (_, other) = ask(&q8, question);
    assert_eq!(other.prompt_cached_tokens, 0);
    wait_for_files(cache.path(), 2);
    q8.shutdown();
}

#[test]
fn a_runner_stopped_in_the_middle_of_a_reply_saves_its_prefix_as_it_exits() {
    let dir = store_with_real_model();
    let cache = TempDir::new().unwrap();
    let with_cache = || Core::new(Store::at(dir.path()), EngineConfig { prompt_cache: Some(cache.path().to_path_buf()), ..config() });
    // A short prefix (about 90 tokens): saving it fits the stop's budget on a loaded machine,
    // where other tests' runners share the cores (192 tokens took up to 5 s on two).
    let messages = [ChatMessage::new("system", rules(3)), ChatMessage::new("user", "Recite every rule, one by one, three times.")];

    let core = with_cache();
    let model = core.prepare("gemma3:270m").unwrap();
    let mut events = core.engine().chat(&model, &messages, greedy(2000)).unwrap().generation;
    assert!(matches!(events.next(), Some(StreamEvent::Piece(_))), "the reply started");
    // Busy the whole time: nothing was saved while it ran.
    assert!(saved(cache.path()).is_empty());
    core.shutdown();
    drop(events);
    let files = saved(cache.path());
    assert_eq!(files.len(), 1, "the prefix was saved at stop: {files:?}");
    assert!(files[0].with_extension("sha256").is_file());

    let core = with_cache();
    let (_, stats) = ask_with(&core, "gemma3:270m", &messages, greedy(4));
    assert_eq!(stats.prompt_cached_tokens, tokens_in(&files[0]));
    core.shutdown();
}

#[test]
fn a_model_with_an_adapter_saves_its_prefix_decoded_with_the_adapter() {
    let dir = store_with_real_model();
    let work = TempDir::new().unwrap();
    fs::write(work.path().join("lora.gguf"), crate::modelfile::lora_adapter(0.5)).unwrap();
    fs::write(work.path().join("Modelfile"), "FROM gemma3:270m\nADAPTER lora.gguf\n").unwrap();
    let modelfile = work.path().join("Modelfile").display().to_string();
    crate::modelfile::ok(crate::common::airlock(dir.path(), &["create", "tuned", "-f", &modelfile]));
    let cache = TempDir::new().unwrap();
    let with_cache = || Core::new(Store::at(dir.path()), EngineConfig { prompt_cache: Some(cache.path().to_path_buf()), ..config() });
    let question = "Which berth takes a ship of 150 metres?";

    // The same prefix with and without the adapter: two files, with other KV states.
    let core = with_cache();
    ask_model(&core, "gemma3:270m", question);
    wait_for_files(cache.path(), 1);
    let plain = saved(cache.path());
    let (first, cold) = ask_model(&core, "tuned", question);
    wait_for_files(cache.path(), 2);
    core.shutdown();
    let tuned: Vec<PathBuf> = saved(cache.path()).into_iter().filter(|f| !plain.contains(f)).collect();
    assert_eq!(tuned.len(), 1, "{:?}", saved(cache.path()));
    assert_eq!(tokens_in(&tuned[0]), tokens_in(&plain[0]), "the same prefix");
    assert_ne!(fs::read(&tuned[0]).unwrap(), fs::read(&plain[0]).unwrap(), "the adapter was not applied to the saved prefix");

    // After a restart the adapter's model starts from its own file.
    let core = with_cache();
    let (again, warm) = ask_model(&core, "tuned", question);
    println!("tuned replies: {first:?} / {again:?}; cold {cold:?}; warm {warm:?}");
    assert!(!again.is_empty());
    assert_eq!(warm.prompt_cached_tokens, tokens_in(&tuned[0]));
    core.shutdown();
}
