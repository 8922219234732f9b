//! `airlock embed MODEL TEXT…`: one JSON array of numbers per input on stdout, in order, for
//! scripts (each input's L2-normalised embedding, as `/api/embed` returns it). Without TEXT,
//! each non-empty line of piped stdin is one input. Runs the model in this process, like `run`.

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use crate::core::Core;
use crate::engine::embed::EmbedSettings;
use crate::engine::protocol::EmbedInput;

#[derive(Args)]
pub struct EmbedArgs {
    /// The model to embed with (an embedding model, or any model: mean pooling)
    model: String,
    /// The texts, one vector each; without any, each line of piped stdin
    texts: Vec<String>,
    /// Keep only the first N values of each vector (normalised again)
    #[arg(long, value_name = "N")]
    dimensions: Option<usize>,
    /// Fail on a text longer than the context instead of cutting it to fit
    #[arg(long)]
    no_truncate: bool,
    /// Context per input in tokens (default: the model's num_ctx, else 4096, at most its trained context)
    #[arg(long, value_name = "TOKENS")]
    num_ctx: Option<u32>,
}

pub fn run(core: &Core, args: EmbedArgs) -> Result<ExitCode> {
    let mut texts = args.texts;
    if texts.is_empty() {
        let stdin = io::stdin();
        if stdin.is_terminal() {
            bail!("give the texts to embed as arguments, or pipe them in, one per line");
        }
        for line in stdin.lock().lines() {
            let line = line?;
            if !line.trim().is_empty() {
                texts.push(line);
            }
        }
        if texts.is_empty() {
            bail!("stdin held no text to embed");
        }
    }
    let model = core.prepare(&args.model)?;
    let settings = EmbedSettings { truncate: !args.no_truncate, dimensions: args.dimensions.filter(|d| *d > 0), num_ctx: args.num_ctx, ..EmbedSettings::default() };
    let inputs = texts.into_iter().map(EmbedInput::Text).collect();
    let result = core.engine().embed(&model, inputs, &settings);
    core.shutdown();
    let out = result?;
    let mut stdout = io::stdout().lock();
    for v in &out.embeddings {
        writeln!(stdout, "{}", serde_json::to_string(v)?)?;
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
