//! Images in prompts, through llama.cpp's multimodal library (mtmd): the projector (`mmproj`)
//! loaded beside the text model, prompts with images cut into text and image chunks, and the
//! image chunks encoded and decoded into a sequence's KV cache.
//!
//! The session's prefix reuse compares token lists, so an image stands in a prompt's token list
//! as a run of *image tokens*: negative ids (never a vocabulary token) derived from the image's
//! bytes and the position in the run. The same image at the same place matches, so a
//! conversation's next turn reuses its earlier images' cache; a different image never matches a
//! cached one, and reuse never stops inside an image (image tokens attend to each other, so half
//! an image's cache is no cache). Nothing here may panic on a client's image: undecodable bytes
//! are a request error.

use base64::Engine as _;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::{self, MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputChunkType, MtmdInputChunks, MtmdInputText};
use llama_cpp_2::token::LlamaToken;
use sha2::{Digest, Sha256};

use super::RequestError;

/// The text that marks where each image goes in a prompt (llama.cpp's default media marker).
pub fn marker() -> &'static str {
    mtmd::mtmd_default_marker()
}

/// A loaded projector.
pub struct Vision {
    ctx: MtmdContext,
    /// Positions are not token counts (M-RoPE, Qwen2-VL and kin): prefix reuse stops before the
    /// first image.
    mrope: bool,
}

impl Vision {
    pub fn load(path: &std::path::Path, model: &LlamaModel, threads: u32, use_gpu: bool) -> Result<Self, String> {
        if !path.is_file() {
            return Err(format!("projector file not found: {}", path.display()));
        }
        let params = MtmdContextParams { use_gpu, print_timings: false, n_threads: threads as i32, ..MtmdContextParams::default() };
        let path_text = path.to_str().ok_or_else(|| format!("the projector path is not UTF-8: {}", path.display()))?;
        let ctx = MtmdContext::init_from_file(path_text, model, &params).map_err(|e| {
            format!("llama.cpp could not load the projector {} ({e}); is it an mmproj file made for this model? Its log is on stderr", path.display())
        })?;
        if !ctx.support_vision() {
            return Err(format!("the projector {} has no vision encoder (an audio-only projector?); Airlock sends it images only", path.display()));
        }
        let mrope = ctx.decode_use_mrope();
        Ok(Self { ctx, mrope })
    }

    /// Cuts `prompt` (with one [`marker`] per image) into chunks, and lays them out as the token
    /// list the session's cache compares. `bos` is prepended unless the prompt starts with it.
    pub fn prepare(&self, prompt: &str, images: &[String], bos: Option<&str>) -> Result<MediaPrompt, RequestError> {
        let markers = prompt.matches(marker()).count();
        if markers != images.len() {
            return Err(RequestError::new(
                "images",
                format!("the prompt has {markers} image markers ({}) for {} images; do not write the marker in message text", marker(), images.len()),
            ));
        }
        let mut decoded = Vec::with_capacity(images.len());
        for (i, b64) in images.iter().enumerate() {
            let bytes = decode_base64(b64).map_err(|e| RequestError::new("images", format!("image {}: not valid base64 ({e})", i + 1)))?;
            decoded.push(bytes);
        }
        let text = match bos {
            Some(b) if !b.is_empty() && !prompt.starts_with(b) => format!("{b}{prompt}"),
            _ => prompt.to_string(),
        };
        let chunks = self.tokenize(&text, &decoded, 0)?;
        let mut tokens = Vec::new();
        let mut spans = Vec::new();
        let mut image = 0usize;
        for i in 0..chunks.len() {
            let Some(chunk) = chunks.get(i) else { continue };
            match chunk.chunk_type() {
                MtmdInputChunkType::Text => tokens.extend_from_slice(chunk.text_tokens().unwrap_or(&[])),
                _ => {
                    let start = tokens.len();
                    let seed = image_seed(decoded.get(image).map(Vec::as_slice).unwrap_or(&[]));
                    tokens.extend((0..chunk.n_tokens()).map(|j| image_token(seed, j)));
                    spans.push(start..tokens.len());
                    image += 1;
                }
            }
        }
        if spans.last().is_some_and(|s| s.end == tokens.len()) {
            return Err(RequestError::new("images", "the prompt ends with an image: put text (or the chat template's turn end) after it"));
        }
        Ok(MediaPrompt { text, images: decoded, tokens, spans })
    }

    /// The chunks of `text` with `images`, which start at image `first` of the prompt.
    fn tokenize(&self, text: &str, images: &[Vec<u8>], first: usize) -> Result<MtmdInputChunks, RequestError> {
        let mut bitmaps = Vec::with_capacity(images.len());
        for (i, bytes) in images.iter().enumerate() {
            let bitmap = MtmdBitmap::from_buffer(&self.ctx, bytes, false).map_err(|_| {
                RequestError::new("images", format!("image {} could not be decoded; send PNG, JPEG, BMP or GIF data", first + i + 1))
            })?;
            bitmaps.push(bitmap);
        }
        let refs: Vec<&MtmdBitmap> = bitmaps.iter().collect();
        let input = MtmdInputText { text: text.to_string(), add_special: false, parse_special: true };
        self.ctx.tokenize(input, &refs).map_err(|e| RequestError::new("images", format!("the prompt and its images could not be prepared: {e}")))
    }

    /// Where cache reuse of `prompt` must stop, at most `common`: never inside an image, and for
    /// M-RoPE models never past the first image.
    pub fn clamp_reuse(&self, prompt: &MediaPrompt, common: usize) -> usize {
        let mut common = common;
        for span in &prompt.spans {
            if self.mrope && common > span.start {
                return span.start;
            }
            if span.start < common && common < span.end {
                common = span.start;
            }
        }
        common
    }

    /// The first image of `prompt` whose tokens are not all among the `cached` ones; `None` when
    /// every image is cached (the rest is plain text for the session's batches).
    pub fn first_uncached(&self, prompt: &MediaPrompt, cached: usize) -> Option<usize> {
        prompt.spans.iter().position(|s| s.end > cached)
    }

    /// The chunks from image `k` to the end, and the index in the prompt's token list where they
    /// begin (the image's opening tokens, e.g. `<start_of_image>`, included).
    pub fn tail(&self, prompt: &MediaPrompt, k: usize) -> Result<(usize, MtmdInputChunks), RequestError> {
        let at = prompt.text.match_indices(marker()).nth(k).map(|(i, _)| i).unwrap_or(prompt.text.len());
        let chunks = self.tokenize(&prompt.text[at..], &prompt.images[k..], k)?;
        let len = chunks.total_tokens();
        let start = prompt.tokens.len().checked_sub(len).filter(|s| *s <= prompt.spans[k].start).ok_or_else(|| {
            RequestError::new("images", "the prompt's image chunks did not line up; send the images in a new conversation")
        })?;
        Ok((start, chunks))
    }

    /// Encodes and decodes `chunks` into sequence `seq` from position `pos`, logits for the last
    /// token; returns the next position.
    pub fn eval(&mut self, chunks: &MtmdInputChunks, ctx: &mut LlamaContext<'_>, pos: i32, seq: i32, n_batch: i32) -> Result<i32, String> {
        chunks.eval_chunks(&mut self.ctx, ctx, pos, seq, n_batch, true).map_err(|e| format!("llama.cpp could not encode the images: {e}"))
    }
}

/// A prompt with images, ready for the session: its token list (images as image tokens).
pub struct MediaPrompt {
    /// The prompt text with its markers (and the BOS text when it was added).
    text: String,
    images: Vec<Vec<u8>>,
    pub tokens: Vec<LlamaToken>,
    /// Where each image's tokens are in `tokens`.
    pub spans: Vec<std::ops::Range<usize>>,
}

fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let trimmed: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(trimmed.trim_end_matches('=')).or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed.trim_end_matches('=')))
}

/// What an image's tokens are made from: its bytes (the same image encodes the same way).
fn image_seed(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(seed)
}

/// Image token `j` of an image: a negative id no vocabulary has.
fn image_token(seed: u64, j: usize) -> LlamaToken {
    let mixed = seed.wrapping_add((j as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let mixed = (mixed ^ (mixed >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    LlamaToken(-1 - ((mixed >> 33) as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tokens_are_never_vocabulary_ids_and_depend_on_the_image() {
        let a = image_seed(b"first image");
        let b = image_seed(b"second image");
        for j in 0..256 {
            assert!(image_token(a, j).0 < 0 && image_token(b, j).0 < 0);
        }
        assert_ne!(image_token(a, 0), image_token(b, 0));
        assert_eq!(image_token(a, 3), image_token(image_seed(b"first image"), 3));
        assert_ne!(image_token(a, 3), image_token(a, 4));
    }

    #[test]
    fn the_engine_writes_the_marker_the_projector_looks_for() {
        assert_eq!(marker(), crate::engine::vision::IMAGE_MARKER);
    }

    #[test]
    fn base64_with_line_breaks_or_without_padding_decodes() {
        assert_eq!(decode_base64("aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert!(decode_base64("not base64!").is_err());
    }
}
