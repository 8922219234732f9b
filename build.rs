//! Build script: makes the llama.cpp shared libraries findable at run time, and (feature
//! `desktop`) runs tauri-build. It only sets link arguments, copies files next to the binaries
//! and generates Tauri's context; it must never compile or download anything.
//!
//! `llama-cpp-sys-2` (features `dynamic-link` + `dynamic-backends`) builds shared `libllama.so` /
//! `libggml*.so` and the CPU-variant modules (`libggml-cpu-<variant>.so`) into its own `OUT_DIR`.
//! Its own copy step links only the unversioned `libX.so` *symlinks* into `target/<profile>/`,
//! `deps/` and `examples/`, which dangle there (their `libX.so.0` targets are not copied), and a
//! later build of it with another hash then fails on them ("File exists"). So we put the whole
//! chain (`libX.so -> libX.so.0 -> libX.so.0.N.M`) and the CPU modules in those directories,
//! which makes the dangling links valid and `target/<profile>/` self-contained for packaging,
//! and give every linked artefact an rpath of its own directory (and its parent, for `deps/` and
//! `examples/`), so no `LD_LIBRARY_PATH` is needed.

use std::path::{Path, PathBuf};

/// The desktop app's commands (src-tauri/desktop/commands.rs). Each gets an `allow-…`
/// permission; capabilities/default.json grants exactly these, and nothing of Tauri's core or of
/// a plugin, to the web view.
#[cfg(feature = "desktop")]
const APP_COMMANDS: &[&str] = &[
    "list_models",
    "model_details",
    "delete_model",
    "open_store_folder",
    "pick_path",
    "import_path",
    "scan_import_folder",
    "import_found",
    "cancel_transfer",
    "export_models",
    "subscribe_drops",
    "hardware",
    "start_chat",
    "stop_chat",
    "parameter_limits",
    "list_conversations",
    "save_conversation",
    "delete_conversation",
    "get_settings",
    "set_api_server",
    "set_signature_policy",
    "set_theme",
    "set_ui_state",
    "trust_add",
    "trust_remove",
    "modelfile_parts",
    "preview_duplicate",
    "duplicate_model",
    "pull_from_registry",
    "set_registry",
    "documents_of",
    "pick_documents",
    "attach_documents",
    "detach_document",
    "add_library",
    "remove_library",
    "use_libraries",
    "sync_documents",
    "cancel_indexing",
    "embedding_settings",
    "set_embedding_model",
    "retrieve_documents",
    "loaded_models",
    "unload_model",
    "model_capabilities",
    "export_conversation",
    "import_conversation",
    "subscribe_drag",
    "read_image",
    "mcp_servers",
    "save_mcp_server",
    "remove_mcp_server",
    "import_mcp_servers",
    "set_tool_always_allow",
    "mcp_tools",
    "mcp_call",
    "mcp_cancel",
    "mcp_release",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    build_identity();
    #[cfg(feature = "desktop")]
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(tauri_build::AppManifest::new().commands(APP_COMMANDS))).expect("tauri-build failed (is ui/dist built? run `npm --prefix ui run build`)");
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_BACKENDS_DIR");

    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" || target_os == "android" || target_os == "freebsd" {
        // DT_RPATH, not DT_RUNPATH: only RPATH also serves the libraries' own dependencies
        // (libggml.so needs libggml-base.so, which a binary may not name itself). `$ORIGIN` and
        // its parent serve cargo's target folders; `$ORIGIN/../lib/airlock` the packages
        // (/usr/bin + /usr/lib/airlock, and the portable folder's bin/ + lib/airlock/).
        println!("cargo:rustc-link-arg=-Wl,--disable-new-dtags,-rpath,$ORIGIN:$ORIGIN/..:$ORIGIN/../lib/airlock");
    } else if target_os == "macos" {
        println!("cargo:rustc-link-arg=-Wl,-rpath,@executable_path");
        println!("cargo:rustc-link-arg=-Wl,-rpath,@executable_path/..");
    }

    let Ok(backends) = std::env::var("DEP_LLAMA_BACKENDS_DIR") else { return };
    let backends = PathBuf::from(backends);
    let libs = backends.parent().map(|p| p.join("lib")).unwrap_or_default();
    println!("cargo:rerun-if-changed={}", backends.display());
    println!("cargo:rerun-if-changed={}", libs.display());
    // OUT_DIR is target/<profile>/build/airlock-<hash>/out.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let Some(profile_dir) = out_dir.ancestors().nth(3) else { return };
    for (from, only_modules) in [(&backends, true), (&libs, false)] {
        if let Err(e) = copy_libs(from, profile_dir, only_modules, None) {
            println!("cargo:warning=could not copy llama.cpp libraries from {}: {e}", from.display());
        }
    }
    // Tests and examples find the libraries through their `$ORIGIN/..` rpath; their directories
    // only need the llama-cpp-sys-2 links to point somewhere real.
    for sub in ["deps", "examples"] {
        let dir = profile_dir.join(sub);
        let _ = std::fs::create_dir_all(&dir);
        if let Err(e) = copy_libs(&libs, &dir, false, Some(Path::new(".."))) {
            println!("cargo:warning=could not link llama.cpp libraries into {}: {e}", dir.display());
        }
    }
}

/// What `airlock --version` names: the commit (`AIRLOCK_COMMIT`, else git, else `unknown`) and the
/// pinned llama-cpp-sys-2 version (from Cargo.lock).
fn build_identity() {
    println!("cargo:rerun-if-env-changed=AIRLOCK_COMMIT");
    println!("cargo:rerun-if-changed=Cargo.lock");
    let git = |args: &[&str]| {
        std::process::Command::new("git").args(args).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = std::env::var("AIRLOCK_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| git(&["rev-parse", "--short=12", "HEAD"])).unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves (a commit, a checkout).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let head_ref = git(&["symbolic-ref", "-q", "HEAD"]).map(|r| format!("{dir}/{r}"));
        for file in [Some(format!("{dir}/HEAD")), head_ref].into_iter().flatten() {
            // A file that does not exist would rerun this script on every build.
            if Path::new(&file).exists() {
                println!("cargo:rerun-if-changed={file}");
            }
        }
    }
    println!("cargo:rustc-env=AIRLOCK_COMMIT={commit}");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let sys_version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"llama-cpp-sys-2\""))
        .and_then(|p| p.lines().find_map(|l| l.trim().strip_prefix("version = \"")?.strip_suffix('"').map(str::to_owned)))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=AIRLOCK_LLAMA_CPP_SYS_VERSION={sys_version}");
}

/// Copies `lib*.so*` files (symlinks as symlinks) from `from` into `to`; with `only_modules`,
/// only ggml backend modules; with `link_to`, makes each a symlink to `link_to/<name>` instead.
fn copy_libs(from: &Path, to: &Path, only_modules: bool, link_to: Option<&Path>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let wanted = if only_modules {
            name.starts_with("libggml-") || name.starts_with("ggml-")
        } else {
            name.starts_with("lib") && (name.contains(".so") || name.ends_with(".dylib"))
        };
        if !wanted {
            continue;
        }
        let dst = to.join(&name);
        let tmp = to.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let meta = std::fs::symlink_metadata(&path)?;
        if let Some(base) = link_to {
            #[cfg(unix)]
            std::os::unix::fs::symlink(base.join(&name), &tmp)?;
            #[cfg(not(unix))]
            continue;
        } else if meta.file_type().is_symlink() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(std::fs::read_link(&path)?, &tmp)?;
            #[cfg(not(unix))]
            continue;
        } else {
            // A fresh file, never a hard link: the next llama.cpp build rewrites its files in
            // place, and a running runner must keep the module it mapped.
            std::fs::copy(&path, &tmp)?;
        }
        // Rename over the old file or link, so a running binary never sees a half-written one.
        std::fs::rename(&tmp, &dst)?;
    }
    Ok(())
}
