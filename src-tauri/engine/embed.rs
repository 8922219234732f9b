//! Embeddings on top of the supervisor: loads the model's embedding runner (its own process,
//! a context with embeddings on, beside the model's text runner when both are used), sends it
//! the inputs as one request (they decode together in batches) and L2-normalises the pooled
//! vectors as Ollama does, shortening them to `dimensions` first when asked.

use std::time::{Duration, Instant};

use super::chat::{ChatError, Engine, PreparedModel};
use super::protocol::EmbedInput;
use super::supervisor::{LoadSpec, RunnerGuard};

/// What to embed and how.
#[derive(Clone, Debug)]
pub struct EmbedSettings {
    /// Cut inputs longer than the context to it (Ollama's default); else they fail.
    pub truncate: bool,
    /// Scale each vector to length 1 (`/api/embed`, `/v1/embeddings`); Ollama's older
    /// `/api/embeddings` returns them as the model made them.
    pub normalize: bool,
    /// Keep only the first `dimensions` values (then normalise again), for models trained with
    /// Matryoshka representation learning. `None` or more than the model has: all of them.
    pub dimensions: Option<usize>,
    pub num_ctx: Option<u32>,
    pub num_gpu: Option<u32>,
    pub keep_alive: Option<Duration>,
}

impl Default for EmbedSettings {
    fn default() -> Self {
        EmbedSettings { truncate: true, normalize: true, dimensions: None, num_ctx: None, num_gpu: None, keep_alive: None }
    }
}

/// Vectors in input order, with Ollama's figures.
#[derive(Clone, Debug)]
pub struct Embedded {
    pub embeddings: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
    pub load_duration: Duration,
    pub total_duration: Duration,
}

impl Engine {
    /// Loads (or finds) `model`'s embedding runner.
    pub fn embedding_runner(&self, model: &PreparedModel, settings: &EmbedSettings) -> Result<(RunnerGuard, Duration), ChatError> {
        let started = Instant::now();
        let num_ctx = model.context_length(settings.num_ctx);
        let spec = LoadSpec {
            name: model.name.clone(),
            model_path: model.model_path.clone(),
            num_ctx,
            // Parallelism is inside the request: its inputs decode together as sequences.
            parallel: 1,
            num_gpu: settings.num_gpu,
            // An f16 cache (the runner's default) and no checkpoints: embeddings keep no conversation.
            size: model.size(num_ctx, Default::default(), 0),
            adapter: model.adapter.clone(),
            projector: None,
            embedding: true,
            // An embedding context holds one batch: its cache is small and built as llama.cpp
            // defaults it, whatever the chat settings are.
            flash_attention: Default::default(),
            kv_cache: Default::default(),
            draft: None,
        };
        let runner = self.supervisor.load(&spec, settings.keep_alive)?;
        Ok((runner, started.elapsed()))
    }

    /// Embeds `inputs` with `model`. No inputs: loads the model and returns no vectors (Ollama's
    /// way to preload an embedding model).
    pub fn embed(&self, model: &PreparedModel, inputs: Vec<EmbedInput>, settings: &EmbedSettings) -> Result<Embedded, ChatError> {
        let started = Instant::now();
        let (runner, load_duration) = self.embedding_runner(model, settings)?;
        if inputs.is_empty() {
            return Ok(Embedded { embeddings: Vec::new(), prompt_tokens: 0, load_duration, total_duration: started.elapsed() });
        }
        let (mut embeddings, prompt_tokens) = self.supervisor.embed(&runner, inputs, settings.truncate)?;
        for v in &mut embeddings {
            shape(v, settings.normalize, settings.dimensions);
        }
        Ok(Embedded { embeddings, prompt_tokens, load_duration, total_duration: started.elapsed() })
    }
}

/// Ollama's order: normalise, then (when shortening) cut and normalise again.
pub fn shape(v: &mut Vec<f32>, normalize: bool, dimensions: Option<usize>) {
    if normalize {
        l2_normalize(v);
    }
    if let Some(d) = dimensions.filter(|d| *d > 0 && *d < v.len()) {
        v.truncate(d);
        if normalize {
            l2_normalize(v);
        }
    }
}

/// Scales `v` to Euclidean length 1; a zero vector stays zero.
pub fn l2_normalize(v: &mut [f32]) {
    let sum: f64 = v.iter().map(|x| (*x as f64) * (*x as f64)).sum();
    if sum > 0.0 {
        let scale = (1.0 / sum.sqrt()) as f32;
        v.iter_mut().for_each(|x| *x *= scale);
    }
}

/// Cosine similarity of two vectors of the same length (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += (*x as f64) * (*y as f64);
        na += (*x as f64) * (*x as f64);
        nb += (*y as f64) * (*y as f64);
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na.sqrt() * nb.sqrt())) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    #[test]
    fn normalised_vectors_have_unit_length_and_keep_direction() {
        let mut v = vec![3.0, 4.0];
        shape(&mut v, true, None);
        assert!((norm(&v) - 1.0).abs() < 1e-6);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut zero = vec![0.0; 4];
        shape(&mut zero, true, None);
        assert_eq!(zero, vec![0.0; 4]);
    }

    #[test]
    fn dimensions_cut_then_renormalise_as_ollama_does() {
        let mut v = vec![1.0, 2.0, 2.0, 10.0];
        shape(&mut v, true, Some(3));
        assert_eq!(v.len(), 3);
        assert!((norm(&v) - 1.0).abs() < 1e-6);
        assert!((v[0] - 1.0 / 3.0).abs() < 1e-6);
        let mut all = vec![1.0, 2.0];
        shape(&mut all, true, Some(10));
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn raw_vectors_stay_as_the_model_made_them() {
        let mut v = vec![3.0, 4.0, 5.0];
        shape(&mut v, false, None);
        assert_eq!(v, vec![3.0, 4.0, 5.0]);
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal_vectors() {
        assert!((cosine(&[1.0, 1.0], &[2.0, 2.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
