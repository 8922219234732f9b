//! Every environment variable the code reads is in the table of docs/safety.md, and every row of
//! the table is still read: the table is how an administrator learns what can change Airlock's
//! behaviour from outside, so it must be complete.

use std::collections::BTreeSet;
use std::path::Path;

/// Names read by the non-test code of `src-tauri/`: `env::var("X")` / `var_os("X")`, clap's
/// `env = "X"`, and every `"AIRLOCK_…"` / `"OLLAMA_…"` string (constants, helper calls), less the
/// build-time `env!("X")`.
fn names_read_by_the_code() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut files = Vec::new();
    collect_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src-tauri"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Inline test modules sit at the end of a file, by convention.
        let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap();
        for (i, _) in text.match_indices('"') {
            let rest = &text[i + 1..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
            if name.len() < 3 || !rest[name.len()..].starts_with('"') {
                continue;
            }
            let before = &text[..i];
            let read = ["var(", "var_os(", "env = ", "non_empty("].iter().any(|call| before.ends_with(call));
            let ours = name.starts_with("AIRLOCK_") || name.starts_with("OLLAMA_");
            if (read || ours) && !before.ends_with("env!(") {
                names.insert(name);
            }
        }
    }
    names
}

fn collect_sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests" && n != "testdata") {
                collect_sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && !path.file_name().is_some_and(|n| n == "tests.rs") {
            out.push(path);
        }
    }
}

/// The names in the first column of the table under "## Environment variables".
fn names_in_the_table() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/safety.md")).unwrap();
    let section = doc.split("## Environment variables").nth(1).expect("docs/safety.md has the section");
    let section = section.split("\n## ").next().unwrap();
    let mut names = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split('|').nth(1).unwrap();
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 {
                names.insert(part.split('=').next().unwrap().to_string());
            }
        }
    }
    names
}

#[test]
fn env_table_lists_every_variable_the_code_reads() {
    let read = names_read_by_the_code();
    let listed = names_in_the_table();
    println!("read by the code: {read:?}");
    assert!(read.contains("AIRLOCK_REGISTRY_AUTH") && read.contains("DOCKER_CONFIG") && read.contains("SOURCE_DATE_EPOCH"), "the scan finds constants and plain reads: {read:?}");
    let missing: Vec<_> = read.difference(&listed).collect();
    assert!(missing.is_empty(), "read by the code but missing from docs/safety.md's table: {missing:?}");
    let stale: Vec<_> = listed.difference(&read).collect();
    assert!(stale.is_empty(), "in docs/safety.md's table but read nowhere: {stale:?}");
}
