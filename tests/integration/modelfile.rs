//! `airlock create -f Modelfile`, `show --modelfile`/`--parameters`/`--system`/`--template`,
//! `cp`, and the engine honouring the layers, on the real test model.

use std::fs;
use std::path::Path;

use airlock::store::Store;
use tempfile::TempDir;

use crate::common::*;
use crate::engine::store_with_real_model;

const TEMPLATE: &str = "{{ if .System }}{{ .System }}\n\n{{ end }}{{ range .Messages }}{{ if eq .Role \"user\" }}Question: {{ .Content }}\n{{ else if eq .Role \"assistant\" }}Answer: {{ .Content }}\n{{ end }}{{ end }}Answer:";

fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "failed: {}\n{}", stdout(&o), stderr(&o));
    o
}

fn model_id(store: &Path, name: &str) -> String {
    Store::at(store).resolve(name).unwrap().id.hex()
}

fn write_modelfile(dir: &Path, text: &str) -> String {
    let path = dir.join("Modelfile");
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn created_model_round_trips_through_show_modelfile_and_runs_with_its_layers() {
    let store = store_with_real_model();
    let work = TempDir::new().unwrap();
    let modelfile = format!(
        "# a model made the Ollama way\nFROM {}\nTEMPLATE \"\"\"{TEMPLATE}\"\"\"\nSYSTEM You answer in one short sentence.\nMESSAGE user What is the capital of France?\nMESSAGE assistant Paris.\nPARAMETER temperature 0\nPARAMETER num_predict 24\nLICENSE \"\"\"Test licence\nline two\"\"\"\n",
        real_model().display()
    );
    let file = write_modelfile(work.path(), &modelfile);
    let before = Store::at(store.path()).blobs_dir().read_dir().unwrap().count();
    let out = ok(airlock(store.path(), &["create", "tuned", "-f", &file]));
    assert!(stderr(&out).contains("using existing layer"), "the weights were already in the store: {}", stderr(&out));
    // Weights shared: only the new text layers and the config were added.
    let after = Store::at(store.path()).blobs_dir().read_dir().unwrap().count();
    assert_eq!(after - before, 6, "template, system, license, params, messages, config");

    // The layers as `show` prints them.
    assert_eq!(stdout(&ok(airlock(store.path(), &["show", "tuned", "--system"]))), "You answer in one short sentence.\n");
    assert_eq!(stdout(&ok(airlock(store.path(), &["show", "tuned", "--template"]))), format!("{TEMPLATE}\n"));
    let params = stdout(&ok(airlock(store.path(), &["show", "tuned", "--parameters"])));
    assert!(params.contains("num_predict                    24") && params.contains("temperature                    0"), "{params}");
    assert_eq!(stdout(&ok(airlock(store.path(), &["show", "tuned", "--license"]))), "Test licence\nline two\n");

    // show --modelfile makes the same model again: identical model ID.
    let shown = stdout(&ok(airlock(store.path(), &["show", "tuned", "--modelfile"])));
    assert!(shown.contains("MESSAGE user What is the capital of France?") && shown.contains("PARAMETER num_predict 24"), "{shown}");
    let again = TempDir::new().unwrap();
    let file2 = write_modelfile(again.path(), &shown);
    ok(airlock(store.path(), &["create", "tuned-again", "-f", &file2]));
    assert_eq!(model_id(store.path(), "tuned-again"), model_id(store.path(), "tuned"));

    // `run` renders the system prompt and the MESSAGE turns before the question.
    let run = ok(airlock(store.path(), &["run", "tuned", "--verbose", "What is two plus two?"]));
    let expected = "You answer in one short sentence.\n\nQuestion: What is the capital of France?\nAnswer: Paris.\nQuestion: What is two plus two?\nAnswer:";
    let line = format!("rendered prompt:      {}", serde_json::to_string(expected).unwrap());
    assert!(stderr(&run).contains(&line), "expected {line}\nin {}", stderr(&run));
    let reply = stdout(&run).trim().to_string();

    // A stop word from that reply ends the next one right before it (greedy is deterministic).
    let word = reply.split_whitespace().skip(1).find(|w| !w.contains('"')).unwrap_or_else(|| panic!("reply too short to pick a stop word: {reply:?}")).to_string();
    let cut = reply.find(&word).unwrap();
    let stop_file = write_modelfile(work.path(), &format!("FROM tuned\nPARAMETER stop \"{word}\"\n"));
    ok(airlock(store.path(), &["create", "tuned-stop", "-f", &stop_file]));
    let stopped = ok(airlock(store.path(), &["run", "tuned-stop", "What is two plus two?"]));
    assert_eq!(stdout(&stopped).trim(), reply[..cut].trim(), "full reply {reply:?}, stop {word:?}");
    let params = stdout(&ok(airlock(store.path(), &["show", "tuned-stop", "--parameters"])));
    assert!(params.contains("temperature") && params.contains(&format!("stop                           {}", serde_json::to_string(&word).unwrap())), "inherited and new: {params}");
    assert_store_consistent(store.path());
}

#[test]
fn bad_modelfiles_are_refused_naming_the_line_and_write_nothing() {
    let store = store_with_real_model();
    let work = TempDir::new().unwrap();
    let before = store_files(store.path());
    let cases = [
        ("FROM gemma3:270m\nSYSTEM fine\nTEMPLATE {{ if .System }}unclosed\n", "line 3", "TEMPLATE does not parse"),
        ("FROM gemma3:270m\nPARAMETER temprature 0.5\n", "line 2", "unknown parameter \"temprature\""),
        ("FROM gemma3:270m\n\nPARAMETER top_k many\n", "line 3", "whole number"),
        ("FROM gemma3:270m\nMESSAGE robot beep\n", "line 2", "must be one of"),
        ("FROM no-such-model\n", "", "no such file, and no model"),
        ("SYSTEM no base\n", "", "no FROM"),
    ];
    for (text, line, needle) in cases {
        let file = write_modelfile(work.path(), text);
        let out = airlock(store.path(), &["create", "broken", "-f", &file]);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(line) && err.contains(needle), "{text:?}: {err}");
        assert_eq!(store_files(store.path()), before, "{text:?} wrote to the store");
    }
    assert!(!store.path().join(".airlock-staging").exists());
    // The default Modelfile is ./Modelfile; a missing one is a clear error.
    let out = airlock(store.path(), &["create", "broken"]);
    assert!(stderr(&out).contains("cannot read the Modelfile"), "{}", stderr(&out));
}

#[test]
fn cp_writes_a_new_manifest_and_copies_no_blob() {
    let store = store_with_real_model();
    let blobs = Store::at(store.path()).blobs_dir().read_dir().unwrap().count();
    let out = ok(airlock(store.path(), &["cp", "gemma3:270m", "mine:v1"]));
    assert_eq!(stdout(&out), "copied 'gemma3:270m' to 'mine:v1'\n");
    assert_eq!(model_id(store.path(), "mine:v1"), model_id(store.path(), "gemma3:270m"));
    assert_eq!(Store::at(store.path()).blobs_dir().read_dir().unwrap().count(), blobs);
    let out = airlock(store.path(), &["cp", "nothing-here", "x"]);
    assert!(!out.status.success() && stderr(&out).contains("not found"), "{}", stderr(&out));
}
