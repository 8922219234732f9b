//! Sliding-window KV caches. A model with sliding-window attention layers (Gemma 2 and 3,
//! Cohere 2, gpt-oss, …) keeps only the last window of those layers' cache, as llama-server does:
//! at 32k tokens that is about a fifth of the memory of keeping them whole. The price is that a
//! sequence can only be cut back to a token whose window is still in the cache. This file cuts a
//! sequence back to the longest prefix it can still continue from: the prefix itself when its
//! window is there, else the latest checkpoint (the window layers' state, saved when a prompt
//! has been decoded) at or before it, else nothing. It must never leave a slot's token list
//! claiming a token whose keys and values are not in the cache.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::LlamaStateSeqFlags;

use super::slot::{Checkpoint, Slot};

/// A prompt shorter than this is decoded again faster than a checkpoint is copied.
const MIN_CHECKPOINT_TOKENS: usize = 64;

/// The model's attention window (`<arch>.attention.sliding_window`, the key llama.cpp reads), or
/// None when it has no window layers or does not say: then the whole cache is kept.
pub fn sliding_window(model: &LlamaModel) -> Option<u32> {
    let arch = model.meta_val_str("general.architecture").ok()?;
    let window = model.meta_val_str(&format!("{arch}.attention.sliding_window")).ok()?;
    window.trim().parse::<u32>().ok().filter(|&w| w > 0)
}

/// Cuts sequence `s` (served by `slot`) back to its first `keep` tokens, and returns how many it
/// holds after: `keep`, a checkpoint's count, or 0 (then the sequence is empty).
pub fn cut_back(ctx: &mut LlamaContext<'_>, s: usize, slot: &mut Slot, window: Option<u32>, keep: usize) -> usize {
    let seq = Some(s as u32);
    if keep == 0 || !ctx.clear_kv_cache_seq(seq, Some((keep as i32 + slot.pos_shift).max(0) as u32), None).unwrap_or(false) {
        // Nothing to keep, or memory that cannot drop a tail (recurrent models).
        let _ = ctx.clear_kv_cache_seq(seq, None, None);
        return forget(slot);
    }
    slot.cached.truncate(keep);
    slot.checkpoints.retain(|c| c.tokens <= keep);
    let Some(window) = window else { return keep };
    if has_window(ctx, s, keep as i32 + slot.pos_shift, window) {
        return keep;
    }
    // The window before `keep` has left the cache: go back to the latest checkpoint.
    while let Some(c) = slot.checkpoints.pop() {
        let _ = ctx.clear_kv_cache_seq(seq, Some((c.tokens as i32 + c.pos_shift).max(0) as u32), None);
        if ctx.state_seq_set(&c.state, s as i32).is_ok() && has_window(ctx, s, c.tokens as i32 + c.pos_shift, window) {
            slot.cached.truncate(c.tokens);
            slot.pos_shift = c.pos_shift;
            let tokens = c.tokens;
            slot.checkpoints.push(c);
            return tokens;
        }
    }
    let _ = ctx.clear_kv_cache_seq(seq, None, None);
    forget(slot)
}

/// Saves the window layers' state of sequence `s` now that its prompt is in the cache, so a later
/// turn that shares the prompt but not what followed it does not decode it all again. A slot
/// keeps the latest `max` (each holds one window of the window layers).
pub fn checkpoint(ctx: &LlamaContext<'_>, s: usize, slot: &mut Slot, window: Option<u32>, max: usize) {
    let tokens = slot.cached.len();
    if window.is_none() || max == 0 || tokens < MIN_CHECKPOINT_TOKENS || slot.checkpoints.last().is_some_and(|c| c.tokens + MIN_CHECKPOINT_TOKENS > tokens) {
        return;
    }
    match ctx.state_seq_get(s as i32, LlamaStateSeqFlags::PARTIAL_ONLY) {
        Ok(state) => {
            if slot.checkpoints.len() >= max {
                slot.checkpoints.drain(..=slot.checkpoints.len() - max);
            }
            slot.checkpoints.push(Checkpoint { tokens, pos_shift: slot.pos_shift, state });
        }
        Err(e) => eprintln!("airlock runner: no checkpoint of sequence {s}: {e}"),
    }
}

/// Whether the cache still holds every token the next one, at position `next`, attends to
/// (llama-server's test: a token attends to fewer than `window` tokens before it).
fn has_window(ctx: &LlamaContext<'_>, s: usize, next: i32, window: u32) -> bool {
    let first = ctx.kv_cache_seq_pos_min(s as i32);
    first >= 0 && first <= (next - window as i32).max(0)
}

/// Empties `slot`'s view of its sequence (the caller empties the sequence).
pub fn forget(slot: &mut Slot) -> usize {
    slot.cached.clear();
    slot.pos_shift = 0;
    slot.checkpoints.clear();
    0
}
