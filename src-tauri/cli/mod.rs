//! The `airlock` command line: clap commands with output shaped like Ollama's (`airlock list`
//! prints what `ollama list` prints) and `--json` for scripts. Results go to stdout; progress and
//! errors go to stderr. Exit codes: 0 success, 1 failure, 2 usage error.
//!
//! Uses every module below it (`core`, `engine`, `store`, `bundle`, `kit`, `modelfile`, `registry`,
//! `hardware`, `progress`, and `api` for `serve`); never `desktop`, and nothing uses it.

mod access_cmds;
mod bundle_cmds;
mod client;
mod embed_cmd;
mod format;
mod hardware_cmd;
mod import_cmd;
mod kit_cmd;
mod modelfile_cmds;
mod progress;
mod registry_cmds;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::bundle::{self, ImportOptions};
use crate::core::{Core, ModelDetails};
use format::{human_bytes, human_since, table};

#[derive(Parser)]
#[command(name = "airlock", version, about = "Run local LLMs on machines with no network", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the models in the store (like `ollama list`)
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a model's details: architecture, parameters, quantisation, context, license, layers
    Show {
        model: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        parts: modelfile_cmds::ShowParts,
    },
    /// Make a model from a Modelfile (FROM a .gguf, a folder or a model; SYSTEM, TEMPLATE, PARAMETER, MESSAGE…)
    Create(modelfile_cmds::CreateArgs),
    /// Copy a model under a new name (the manifest only: blobs are shared)
    Cp { source: String, destination: String },
    /// Remove a model (its manifest, then the blobs no other model uses)
    Rm {
        #[arg(required = true)]
        models: Vec<String>,
    },
    /// Remove the blobs no model uses (last written over an hour ago), as `airlock serve` does at start
    Prune {
        #[arg(long)]
        json: bool,
    },
    /// Re-hash blobs and report every missing or corrupt one (exit 1 if any)
    Verify {
        model: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Chat with a model: one answer to PROMPT (or piped stdin), else an interactive chat
    Run {
        model: String,
        /// The prompt; without one (and no piped input) the chat is interactive
        prompt: Vec<String>,
        /// Print timings and token rates after each reply (like `ollama run --verbose`)
        #[arg(long)]
        verbose: bool,
        /// How long the model stays loaded after a reply, e.g. 5m, 30s, 0 (Ollama's keep_alive)
        #[arg(long = "keepalive", value_parser = parse_duration)]
        keep_alive: Option<std::time::Duration>,
        /// Let a thinking model reason first, shown dimmed (`--think`, `--think=false`, `--think=low|medium|high`)
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = crate::engine::tools::Think::from_level)]
        think: Option<crate::engine::tools::Think>,
    },
    /// Print each TEXT's embedding as one JSON array per line (texts from stdin without TEXT)
    Embed(embed_cmd::EmbedArgs),
    /// List the models the running server has loaded (like `ollama ps`)
    Ps {
        #[arg(long)]
        json: bool,
    },
    /// Unload a model from the running server now
    Stop { model: String },
    /// Serve the Ollama- and OpenAI-compatible API on 127.0.0.1:11434 (AIRLOCK_HOST / OLLAMA_HOST)
    Serve {
        /// What /api/pull requires of a model's signature: off, warn or require (default: require
        /// once a key is trusted with `airlock trust add`, else off; AIRLOCK_PULL_SIGNATURE)
        #[arg(long, value_name = "POLICY")]
        signature: Option<bundle::SignaturePolicy>,
        /// Let /api/push publish models to the site registry (off by default: every caller of
        /// the API could then replace a model that every machine pulls)
        #[arg(long)]
        allow_push: bool,
        /// Add the devices of llama.cpp RPC workers (`airlock rpc-worker` on other machines) to
        /// this one's, e.g. 10.0.0.5:50052,10.0.0.6:50052 (AIRLOCK_RPC)
        #[arg(long, value_name = "HOST:PORT,…", value_delimiter = ',')]
        rpc: Option<Vec<String>>,
    },
    /// Import models: a bundle (folder, .zip, .zip.001), a kit, an Ollama models/ folder, a .gguf
    /// (split parts are found and merged), or a folder of GGUF files (Hugging Face, LM Studio, Jan, GPT4All)
    Import {
        path: PathBuf,
        /// Import under this name (a source with one model only), e.g. mymodel:q4
        #[arg(long)]
        name: Option<String>,
        /// Clone blobs copy-on-write where the filesystem can (Btrfs, XFS, APFS), else copy; never a hard link, so editing the source later cannot change the store (still verified)
        #[arg(long)]
        link: bool,
        /// Refuse bundles not signed by a trusted key (`airlock trust`); same as --signature require
        #[arg(long)]
        require_signature: bool,
        /// Signature policy: off, warn or require
        #[arg(long, default_value = "off")]
        signature: bundle::SignaturePolicy,
        /// The model's vision projector (its mmproj .gguf), imported with a single .gguf model so it reads images
        #[arg(long, value_name = "MMPROJ")]
        projector: Option<PathBuf>,
        /// List the models a folder of GGUF files or a .gguf would give (names, sizes, projectors, files left out); write nothing
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Bundle(bundle_cmds::BundleCommand),
    #[command(flatten)]
    Registry(registry_cmds::RegistryCommand),
    #[command(flatten)]
    Access(access_cmds::AccessCommand),
    /// Write a kit folder: the portable app, models, INSTALL.txt and SHA256SUMS (`kit verify DIR` checks one)
    Kit(kit_cmd::KitArgs),
    /// Show CPU, memory, GPUs (or why there is none) and where each model would run
    Hardware {
        #[arg(long)]
        json: bool,
        /// List ggml devices as JSON (the child `airlock hardware` runs; internal)
        #[arg(long, hide = true)]
        probe_devices: bool,
    },
    /// Offer this machine's GPUs (or CPU) to an `airlock serve --rpc` head through llama.cpp's RPC
    RpcWorker(crate::engine::rpc_worker::RpcWorkerArgs),
    /// Serve one model over stdin/stdout for the engine's supervisor (internal)
    #[command(hide = true)]
    Runner(crate::engine::runner::RunnerArgs),
    /// Print one document's text as JSON, for the document index (internal: run in a child
    /// process with limits, because parsers meet hostile files)
    #[command(hide = true)]
    Extract { path: PathBuf },
}

pub fn main() -> ExitCode {
    // `--version` names the commit, llama.cpp and the backend modules found at run time.
    let info = crate::hardware::BuildInfo::detect();
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let cmd = Cli::command().version(leak(info.short())).long_version(leak(info.long()));
    let cli = Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit());
    // The runner child serves one model and needs no store.
    if let Command::Runner(args) = cli.command {
        return crate::engine::runner::main(args);
    }
    // So does an RPC worker, which only lends its devices.
    if let Command::RpcWorker(args) = cli.command {
        return crate::engine::rpc_worker::main(args);
    }
    // The document-reader child parses one file and needs no store.
    if let Command::Extract { path } = &cli.command {
        return crate::documents::extract::reader_main(path);
    }
    // The device-probe child loads ggml backends and needs no store either.
    if let Command::Hardware { probe_devices: true, .. } = cli.command {
        return hardware_cmd::probe_devices_main();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    // Tokens and the audit log belong to the server's operator, not to the model store.
    if let Command::Access(cmd) = cli.command {
        return access_cmds::run(cmd);
    }
    let core = Core::from_env()?;
    match cli.command {
        Command::List { json } => list(&core, json),
        Command::Show { model, parts, .. } if parts.any() => modelfile_cmds::show_part(&core, &model, &parts),
        Command::Show { model, json, .. } => show(&core, &model, json),
        Command::Create(args) => modelfile_cmds::create(&core, args),
        Command::Cp { source, destination } => modelfile_cmds::copy(&core, &source, &destination),
        Command::Rm { models } => {
            for m in models {
                let entry = core.store.resolve(&m)?;
                core.store.remove(&m)?;
                println!("deleted '{}'", entry.name.display_shortest());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { model, prompt, verbose, keep_alive, think } => {
            run::run(&core, run::RunArgs { model, prompt, verbose, keep_alive, think })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Embed(args) => embed_cmd::run(&core, args),
        Command::Ps { json } => {
            client::ps(json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop { model } => {
            client::stop(&model)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { signature, allow_push, rpc } => {
            let rpc = rpc.unwrap_or_else(crate::hardware::remote::endpoints_from_env);
            for endpoint in &rpc {
                crate::hardware::remote::check_endpoint(endpoint).map_err(anyhow::Error::msg)?;
            }
            let core = core.with_rpc_workers(rpc);
            let mut cfg = crate::api::ServerConfig::from_env().map_err(anyhow::Error::msg)?;
            if let Some(policy) = signature {
                cfg.pull_signature = crate::api::PullSignature::Fixed(policy);
            }
            cfg.allow_push = allow_push;
            crate::api::serve(std::sync::Arc::new(core), cfg)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { model, json } => verify(&core, model.as_deref(), json),
        Command::Prune { json } => {
            let report = core.store.prune(crate::store::PRUNE_MIN_AGE)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                if let Some(why) = &report.skipped {
                    eprintln!("warning: {why}");
                }
                println!("removed {} blob(s) no model uses ({}); kept {} written within the last hour", report.removed.len(), human_bytes(report.bytes), report.kept_recent);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { path, name, link, require_signature, signature, projector, dry_run, json } => {
            let signature = if require_signature { bundle::SignaturePolicy::Require } else { signature };
            let opts = ImportOptions { name, link, signature, projector, ..Default::default() };
            if dry_run {
                import_cmd::dry_run(&core, &path, &opts, json)
            } else {
                import_cmd::import(&core, &path, &opts, json)
            }
        }
        Command::Bundle(cmd) => bundle_cmds::run(&core, cmd),
        Command::Registry(cmd) => registry_cmds::run(&core, cmd),
        Command::Kit(args) => kit_cmd::run(&core, args),
        Command::Hardware { json, .. } => hardware_cmd::run(&core, json),
        Command::Runner(_) | Command::RpcWorker(_) | Command::Extract { .. } | Command::Access(_) => unreachable!("handled before the store opens"),
    }
}

/// Ollama-style durations: `300`, `30s`, `5m`, `1h`, `0`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}; use e.g. 30s, 5m, 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}; use ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn list(core: &Core, json: bool) -> Result<ExitCode> {
    let (models, problems) = core.store.list()?;
    for p in &problems {
        eprintln!("warning: skipped an unreadable manifest: {p}");
    }
    if json {
        let rows: Vec<_> = models
            .iter()
            .map(|m| {
                serde_json::json!({
                    "name": m.name.display_shortest(),
                    "id": m.id.hex(),
                    "size": m.size(),
                    "modified": format_rfc3339(m.modified),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = SystemTime::now();
    let mut rows = vec![vec!["NAME".into(), "ID".into(), "SIZE".into(), "MODIFIED".into()]];
    rows.extend(models.iter().map(|m| vec![m.name.display_shortest(), m.short_id(), human_bytes(m.size()), human_since(m.modified, now)]));
    print!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

fn format_rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn show(core: &Core, model: &str, json: bool) -> Result<ExitCode> {
    let entry = core.store.resolve(model)?;
    let mut d = core.details(&entry);
    if d.runnable {
        d.context_in_use = core.context_in_use(&entry.name.display_shortest()).ok();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", render_details(&d));
    }
    Ok(ExitCode::SUCCESS)
}

fn render_details(d: &ModelDetails) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    let num = |v: Option<u64>| v.map_or("unknown".into(), |n| n.to_string());
    let mut rows = vec![
        vec!["    architecture".into(), opt(&d.architecture)],
        vec!["    parameters".into(), opt(&d.parameters)],
        vec!["    quantization".into(), opt(&d.quantization)],
        vec!["    context length".into(), num(d.context_length)],
        vec!["    embedding length".into(), num(d.embedding_length)],
        vec!["    layers".into(), num(d.block_count)],
        vec!["    chat template".into(), if d.chat_template { "yes".into() } else { "no (plain prompt format)".into() }],
        vec!["    size".into(), human_bytes(d.size)],
        vec!["    id".into(), d.id[..12].to_string()],
    ];
    if let Some(c) = &d.context_in_use {
        rows.insert(4, vec!["    context in use".into(), format!("{} ({})", c.tokens, c.why)]);
    }
    rows.push(match &d.not_runnable_reason {
        None => vec!["    runnable here".into(), "yes".into()],
        Some(why) => vec!["    runnable here".into(), format!("no: {why}")],
    });
    let mut out = format!("  Model {}\n{}", d.name, table(&rows));
    out.push_str("\n  Layers\n");
    let layer_rows: Vec<Vec<String>> = d
        .layers
        .iter()
        .map(|l| vec![format!("    {}", layer_label(&l.media_type)), l.digest[7..19].to_string(), human_bytes(l.size)])
        .collect();
    out.push_str(&table(&layer_rows));
    if let Some(license) = &d.license {
        let first = license.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        out.push_str(&format!("\n  License\n    {}\n", first.chars().take(100).collect::<String>()));
    }
    out
}

/// `application/vnd.ollama.image.model` → `model`; the config blob → `config`.
fn layer_label(media_type: &str) -> &str {
    if media_type == crate::store::manifest::CONFIG_MEDIA_TYPE {
        return "config";
    }
    media_type.rsplit('.').next().unwrap_or(media_type)
}

fn verify(core: &Core, model: Option<&str>, json: bool) -> Result<ExitCode> {
    let mut checked = 0usize;
    let mut bytes = 0u64;
    let problems = core.store.verify(model, |_, size| {
        checked += 1;
        bytes += size;
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "blobs_checked": checked, "bytes_checked": bytes, "problems": problems }))?);
    } else if problems.is_empty() {
        println!("verified {checked} blobs ({}): all intact", human_bytes(bytes));
    } else {
        for p in &problems {
            eprintln!("{}: {}", p.model, p.problem);
        }
        eprintln!("{} of {checked} blobs are missing or corrupt; import the affected models again", problems.len());
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

