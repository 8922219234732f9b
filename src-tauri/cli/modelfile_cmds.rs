//! `airlock create NAME -f Modelfile`, `airlock cp`, and the Modelfile views of `airlock show`
//! (`--modelfile`, `--parameters`, `--template`, `--system`, `--license`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::core::Core;
use crate::modelfile::{self, ModelLayers, Recipe};

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Name of the new model, e.g. mymodel or mymodel:v2
    pub model: String,
    /// The Modelfile (FROM a .gguf file, a folder holding one, or a model in the store)
    #[arg(short = 'f', long = "file", default_value = "Modelfile")]
    pub file: PathBuf,
    /// Quantize the weights (not supported: Airlock stores GGUF files as they are)
    #[arg(short = 'q', long)]
    pub quantize: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn create(core: &Core, args: CreateArgs) -> Result<ExitCode> {
    if let Some(q) = args.quantize {
        anyhow::bail!("--quantize {q} is not supported: Airlock does not re-quantize models; quantize the GGUF with llama.cpp's llama-quantize and use FROM on the result");
    }
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read the Modelfile {} (create -f FILE names another)", args.file.display()))?;
    let parsed = modelfile::parse(&text).with_context(|| format!("{} is not a valid Modelfile", args.file.display()))?;
    let dir = args.file.parent().filter(|p| !p.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let recipe = Recipe::from_modelfile(&parsed, &dir).with_context(|| format!("{}", args.file.display()))?;
    for w in &recipe.warnings {
        eprintln!("warning: {w}");
    }
    let json = args.json;
    let created = modelfile::create(&core.store, &args.model, &recipe, &mut |status| {
        if !json {
            eprintln!("{status}");
        }
    })
    .with_context(|| format!("cannot create {}", args.model))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&created)?);
    } else {
        println!("created {} (id {})", created.name, &created.id[..12]);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn copy(core: &Core, source: &str, destination: &str) -> Result<ExitCode> {
    let from = core.store.resolve(source)?;
    let to = core.store.copy(source, destination)?;
    println!("copied '{}' to '{}'", from.name.display_shortest(), to.display_shortest());
    Ok(ExitCode::SUCCESS)
}

/// Which part of a model `show` prints instead of its details.
#[derive(clap::Args, Default)]
pub struct ShowParts {
    /// Print a Modelfile that recreates the model
    #[arg(long)]
    pub modelfile: bool,
    /// Print the model's parameters
    #[arg(long)]
    pub parameters: bool,
    /// Print the model's prompt template
    #[arg(long)]
    pub template: bool,
    /// Print the model's system prompt
    #[arg(long)]
    pub system: bool,
    /// Print the model's license
    #[arg(long)]
    pub license: bool,
}

impl ShowParts {
    pub fn any(&self) -> bool {
        self.modelfile || self.parameters || self.template || self.system || self.license
    }
}

pub fn show_part(core: &Core, model: &str, parts: &ShowParts) -> Result<ExitCode> {
    let entry = core.store.resolve(model)?;
    let layers = ModelLayers::read(&core.store, &entry);
    let mut out = String::new();
    if parts.modelfile {
        out.push_str(&layers.modelfile());
    }
    if parts.parameters {
        out.push_str(&layers.parameters.table());
        out.push('\n');
    }
    if parts.template {
        // The Ollama template, else the GGUF's own chat template (what prompts are built with).
        let gguf_template = || core.prepare(model).ok().and_then(|p| p.gguf_template);
        out.push_str(&layers.template.clone().or_else(gguf_template).unwrap_or_default());
        out.push('\n');
    }
    if parts.system {
        out.push_str(layers.system.as_deref().unwrap_or_default());
        out.push('\n');
    }
    if parts.license {
        let license = if layers.licenses.is_empty() { core.details(&entry).license.into_iter().collect() } else { layers.licenses.clone() };
        out.push_str(&license.join("\n\n"));
        out.push('\n');
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
