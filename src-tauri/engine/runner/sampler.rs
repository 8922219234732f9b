//! The sampler chain of one request: Ollama's option names and defaults turned into llama.cpp
//! samplers, and the grammar (GBNF) check that keeps a structured reply on its rules. It owns no
//! context and no slot; the session builds one per request and the decode step calls it once per
//! token. It must never let a client's options or grammar reach a llama.cpp call that aborts the
//! process: an invalid grammar, or one that allows no next token, is a request error.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use super::RequestError;
use crate::engine::protocol::SamplingOptions;

/// llama.cpp's "pick a random seed" value.
const RANDOM_SEED: u32 = 0xFFFF_FFFF;

/// The sampler chain for one request, Ollama's option names and defaults. A grammar is kept
/// apart from the chain: checking one candidate against it is cheap, filtering the whole
/// vocabulary is not, so the full filter runs only when the chain's pick is rejected.
pub(super) struct Sampler {
    chain: LlamaSampler,
    grammar: Option<LlamaSampler>,
}

impl Sampler {
    pub(super) fn new(
        model: &LlamaModel,
        o: &SamplingOptions,
        grammar: Option<&str>,
        n_ctx: u32,
    ) -> Result<Self, RequestError> {
        let temperature = o.temperature.unwrap_or(0.8);
        let chain = if temperature <= 0.0 {
            // Greedy: the most likely token, nothing else applied (what `temperature: 0` means
            // to users and to a reproducible reference loop).
            LlamaSampler::greedy()
        } else {
            let mut v = Vec::new();
            let repeat = o.repeat_penalty.unwrap_or(1.1);
            let freq = o.frequency_penalty.unwrap_or(0.0);
            let presence = o.presence_penalty.unwrap_or(0.0);
            let last_n = match o.repeat_last_n.unwrap_or(64) {
                n if n < 0 => n_ctx as i32,
                n => n,
            };
            if last_n > 0 && (repeat != 1.0 || freq != 0.0 || presence != 0.0) {
                let repeat = if repeat > 0.0 { repeat } else { 1.0 };
                v.push(LlamaSampler::penalties(model.n_vocab(), last_n, repeat, freq, presence));
            }
            let top_k = o.top_k.unwrap_or(40);
            if top_k > 0 {
                v.push(LlamaSampler::top_k(top_k));
            }
            let top_p = o.top_p.unwrap_or(0.9);
            if top_p > 0.0 && top_p < 1.0 {
                v.push(LlamaSampler::top_p(top_p, 1));
            }
            let min_p = o.min_p.unwrap_or(0.0);
            if min_p > 0.0 {
                v.push(LlamaSampler::min_p(min_p, 1));
            }
            v.push(LlamaSampler::temp(temperature));
            v.push(LlamaSampler::dist(o.seed.unwrap_or(RANDOM_SEED)));
            LlamaSampler::chain_simple(v)
        };
        let grammar = match grammar {
            None => None,
            Some(g) => Some(
                LlamaSampler::grammar(model, g, "root")
                    .map_err(|e| RequestError::new("grammar", format!("invalid grammar: {e}")))?,
            ),
        };
        Ok(Self { chain, grammar })
    }

    /// Samples (and accepts, once) the next token from the logits of batch row `idx`.
    pub(super) fn sample(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> Result<LlamaToken, RequestError> {
        let Some(grammar) = self.grammar.as_mut() else {
            // `sample` applies the chain and accepts the token itself.
            return Ok(self.chain.sample(ctx, idx));
        };
        let candidates = LlamaTokenDataArray::from_iter(ctx.candidates_ith(idx), false);
        let mut first = candidates.clone();
        first.apply_sampler(&mut self.chain);
        let mut token = first.selected_token();
        if let Some(t) = token {
            let mut probe = LlamaTokenDataArray::new(vec![LlamaTokenData::new(t, 0.0, 0.0)], false);
            probe.apply_sampler(grammar);
            if !probe.data[0].logit().is_finite() {
                token = None;
            }
        }
        let token = match token {
            Some(t) => t,
            None => {
                let mut all = candidates;
                all.apply_sampler(grammar);
                if !all.data.iter().any(|d| d.logit().is_finite()) {
                    return Err(RequestError::new("grammar", "the grammar allows no next token"));
                }
                all.apply_sampler(&mut self.chain);
                all.selected_token()
                    .ok_or_else(|| RequestError::new("grammar", "no token left after the grammar"))?
            }
        };
        // The checked accept: a grammar that rejects the token is an error, not an abort.
        grammar
            .try_accept(token)
            .map_err(|e| RequestError::new("grammar", format!("grammar rejected the token: {e}")))?;
        self.chain.accept(token);
        Ok(token)
    }
}
