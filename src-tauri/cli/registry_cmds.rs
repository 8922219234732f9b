//! `airlock push` and `airlock pull`: models through the site's own OCI registry.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::bundle_cmds::load_signing_key;
use super::format::human_bytes;
use crate::bundle::SignaturePolicy;
use crate::core::Core;
use crate::registry::{self, ClientOptions, PullOptions, PushOptions, Reference, Registry, Status};
use crate::store::Digest;

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Pull a model from the site's OCI registry: REGISTRY/NAMESPACE/MODEL:TAG, or a short name from AIRLOCK_REGISTRY
    Pull {
        name: String,
        /// Plain HTTP instead of HTTPS (a registry without TLS)
        #[arg(long)]
        insecure: bool,
        /// Trust this PEM CA certificate besides the system's (also AIRLOCK_CA_FILE)
        #[arg(long, value_name = "CA.pem", env = "AIRLOCK_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// Refuse a model not signed by a trusted key (`airlock trust`); same as --signature require
        #[arg(long)]
        require_signature: bool,
        /// Signature policy: off, warn or require
        #[arg(long, default_value = "off")]
        signature: SignaturePolicy,
        #[arg(long)]
        json: bool,
    },
    /// Push a model to the site's OCI registry (credentials: AIRLOCK_REGISTRY_AUTH or docker config.json)
    Push {
        model: String,
        /// Where to: REGISTRY/NAMESPACE/MODEL:TAG (default: the model's name in AIRLOCK_REGISTRY)
        destination: Option<String>,
        #[arg(long)]
        insecure: bool,
        #[arg(long, value_name = "CA.pem", env = "AIRLOCK_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// Sign the model with this minisign secret key; the signature is pushed beside it
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(core: &Core, cmd: RegistryCommand) -> Result<ExitCode> {
    let site = Registry::from_env()?;
    match cmd {
        RegistryCommand::Pull { name, insecure, ca_file, require_signature, signature, json } => {
            let reference = Reference::resolve(&name, site.as_ref(), insecure)?;
            let signature = if require_signature { SignaturePolicy::Require } else { signature };
            let opts = PullOptions { client: ClientOptions { ca_file, ..ClientOptions::from_env() }, signature, ..Default::default() };
            let bars = Bars::new("pulling");
            let result = registry::pull(&core.store, &reference, &opts, &|s: &Status| bars.show(s));
            bars.finish();
            let report = result.with_context(|| format!("cannot pull {}", reference.display()))?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("pulled {} (id {}, {})", report.name, &report.id[..12], human_bytes(report.size));
            if let Some(s) = &report.signer {
                println!("signed by trusted key {} ({})", s.key_id, s.trusted_comment);
            }
            let resumed = if report.bytes_resumed > 0 { format!(", {} resumed", human_bytes(report.bytes_resumed)) } else { String::new() };
            eprintln!("{} blob(s) downloaded and verified ({}){resumed}, {} already present", report.blobs_downloaded, human_bytes(report.bytes_downloaded), report.blobs_already_present);
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Push { model, destination, insecure, ca_file, sign, json } => {
            let local = core.store.resolve(&model)?;
            let dest_name = destination.unwrap_or_else(|| local.name.display_shortest());
            let dest = Reference::resolve(&dest_name, site.as_ref(), insecure)?;
            let opts = PushOptions { client: ClientOptions { ca_file, ..ClientOptions::from_env() }, sign: load_signing_key(sign.as_deref())?, cancel: None };
            let bars = Bars::new("pushing");
            let result = registry::push(&core.store, &model, &dest, &opts, &|s: &Status| bars.show(s));
            bars.finish();
            let report = result.with_context(|| format!("cannot push {model} to {}", dest.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("pushed {} to {} (id {})", report.name, report.reference, &report.id[..12]);
            if let Some(k) = &report.signed_by {
                println!("signed with key {k}");
            }
            eprintln!(
                "{} blob(s) uploaded ({}), {} mounted from another repository, {} already there",
                report.blobs_uploaded,
                human_bytes(report.bytes_uploaded),
                report.blobs_mounted,
                report.blobs_already_present
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Progress on stderr: on a terminal one bar per blob and a total bar, otherwise a line every few
/// seconds (stdout stays clean for `--json`).
struct Bars {
    verb: &'static str,
    multi: Option<MultiProgress>,
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    blobs: BTreeMap<Digest, (u64, u64, Option<ProgressBar>)>,
    total: Option<ProgressBar>,
    started: Option<Instant>,
    last_line: Option<Instant>,
}

impl Bars {
    fn new(verb: &'static str) -> Self {
        let multi = std::io::stderr().is_terminal().then(MultiProgress::new);
        Bars { verb, multi, state: Mutex::new(BarState::default()) }
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template("{msg:20!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}").expect("valid template").progress_chars("=> ")
    }

    fn show(&self, s: &Status) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let started = *st.started.get_or_insert_with(Instant::now);
        let (Some(digest), Some(total), Some(completed)) = (s.digest, s.total, s.completed) else { return };
        let multi = self.multi.as_ref();
        let entry = st.blobs.entry(digest).or_insert_with(|| {
            let bar = multi.map(|m| {
                let b = m.add(ProgressBar::new(total));
                b.set_style(Bars::style());
                b.set_message(s.status.clone());
                b
            });
            (total, 0, bar)
        });
        entry.1 = completed;
        if let Some(bar) = &entry.2 {
            bar.set_position(completed);
            if completed >= total {
                bar.finish();
            }
        }
        let (sum_total, sum_done) = st.blobs.values().fold((0u64, 0u64), |(t, d), b| (t + b.0, d + b.1));
        if let Some(m) = multi {
            let bar = st.total.get_or_insert_with(|| {
                let b = m.insert(0, ProgressBar::new(sum_total));
                b.set_style(Bars::style());
                b.set_message(format!("{} (total)", self.verb));
                b
            });
            bar.set_length(sum_total);
            bar.set_position(sum_done);
        } else if completed >= total || st.last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
            if completed >= total && completed == 0 {
                return;
            }
            st.last_line = Some(Instant::now());
            let rate = sum_done as f64 / started.elapsed().as_secs_f64().max(1e-3);
            eprintln!("{}: {} / {} total {} / {} ({}/s)", s.status, human_bytes(completed), human_bytes(total), human_bytes(sum_done), human_bytes(sum_total), human_bytes(rate as u64));
        }
    }

    fn finish(&self) {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (_, _, bar) in st.blobs.values() {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        }
        if let Some(b) = &st.total {
            b.finish_and_clear();
        }
    }
}
