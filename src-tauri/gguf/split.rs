//! Split GGUF models, as llama.cpp's `gguf-split` writes them (`NAME-00001-of-00003.gguf`): which
//! files are parts of one model, whether they belong together, and one merged GGUF stream made
//! from them (the store keeps one blob per model, as Ollama does). [`write_split`] makes parts the
//! same way, for tests and benchmarks.
//!
//! Only metadata and the tensor tables are trusted from the parts' validated headers; the merged
//! stream is read back through [`super::read`] by whoever stores it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::reader::MAX_TENSOR_COUNT;
use super::types::{GgufInfo, KvSpan, MetaValue, TensorInfo};
use super::writer::{put_str, put_u32, put_u64, put_value};

/// `split.no`: the part's 0-based number (u16).
pub const KEY_NO: &str = "split.no";
/// `split.count`: how many parts the model has (u16).
pub const KEY_COUNT: &str = "split.count";
/// `split.tensors.count`: how many tensors all parts hold together (i32).
pub const KEY_TENSORS: &str = "split.tensors.count";

/// llama.cpp's `llama_split_path` allows at most 99999 parts.
const MAX_PARTS: u32 = 99_999;

/// `("model", 2, 3)` for `model-00002-of-00003.gguf` (case of `.gguf` ignored), else `None`.
pub fn part_name(file_name: &str) -> Option<(&str, u32, u32)> {
    let stem = file_name.get(..file_name.len().checked_sub(5)?).filter(|_| file_name[file_name.len() - 5..].eq_ignore_ascii_case(".gguf"))?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, no) = rest.rsplit_once('-')?;
    let number = |s: &str| (s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u32>().ok()).flatten();
    let (no, count) = (number(no)?, number(count)?);
    (!prefix.is_empty() && (1..=count).contains(&no)).then_some((prefix, no, count))
}

/// The file name of part `no` (1-based) of `count`.
pub fn part_file_name(prefix: &str, no: u32, count: u32) -> String {
    format!("{prefix}-{no:05}-of-{count:05}.gguf")
}

/// What a file's own metadata says about its place in a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMeta {
    /// 0-based.
    pub no: u64,
    pub count: u64,
    pub tensors: u64,
}

/// The split keys of `info`, when it has `split.count` (a model written whole has none).
pub fn split_meta(info: &GgufInfo) -> Option<SplitMeta> {
    let count = info.get_u64(KEY_COUNT)?;
    Some(SplitMeta { no: info.get_u64(KEY_NO).unwrap_or(u64::MAX), count, tensors: info.get_u64(KEY_TENSORS).unwrap_or(u64::MAX) })
}

/// Checks that `parts` (in file-name order) are the whole of one split model: each says it is
/// part i of parts.len(), they agree on the tensor total and hold it, and no tensor is in two.
/// The error names the first part that does not fit.
pub fn check_parts(parts: &[(PathBuf, GgufInfo)]) -> Result<(), String> {
    let count = parts.len() as u64;
    if count < 2 || count > u64::from(MAX_PARTS) {
        return Err(format!("a split model has 2 to {MAX_PARTS} parts, not {count}"));
    }
    let total: u64 = parts.iter().map(|(_, i)| i.tensors.len() as u64).sum();
    if total > MAX_TENSOR_COUNT {
        return Err(format!("the parts hold {total} tensors together, more than the {MAX_TENSOR_COUNT} a GGUF file may have"));
    }
    for (i, (path, info)) in parts.iter().enumerate() {
        let shown = path.display();
        let Some(meta) = split_meta(info) else {
            return Err(format!("{shown} is named as part {} of {count} but has no split metadata (split.count); it is not a part of this model", i + 1));
        };
        if meta.count != count {
            return Err(format!("{shown} says the model has {} parts, but {count} were found", meta.count));
        }
        if meta.no != i as u64 {
            return Err(format!("{shown} is named as part {} but its metadata says part {}; the parts were renamed or mixed up", i + 1, meta.no.saturating_add(1)));
        }
    }
    let mut names = HashSet::new();
    for (path, info) in parts {
        let shown = path.display();
        let tensors = info.get_u64(KEY_TENSORS);
        if tensors != Some(total) {
            let says = tensors.map_or("no tensor total".to_string(), |n| format!("{n} tensors"));
            return Err(format!("{shown} says the model has {says}, but its {count} parts hold {total}; a part is from another model or another split"));
        }
        if info.version != parts[0].1.version {
            return Err(format!("{shown} is GGUF version {}, the first part version {}", info.version, parts[0].1.version));
        }
        if let Some(t) = info.tensors.iter().find(|t| !names.insert(t.name.as_str())) {
            return Err(format!("{shown} holds tensor {} again (a part is duplicated or from another model)", t.name));
        }
    }
    Ok(())
}

/// One stretch of tensor data in the merged stream: `len` bytes at `offset` in part `part`,
/// then `pad` zero bytes.
#[derive(Debug, Clone)]
struct Piece {
    part: usize,
    offset: u64,
    len: u64,
    pad: u64,
}

/// How checked parts become one GGUF file: the first part's metadata less the split keys, every
/// tensor in part order with its offset recomputed, each tensor's data copied from its part.
#[derive(Debug, Clone)]
pub struct Merge {
    paths: Vec<PathBuf>,
    header: Vec<u8>,
    pieces: Vec<Piece>,
    len: u64,
}

impl Merge {
    /// Plans the merge of `parts` (already through [`check_parts`]); reads only the first part's
    /// metadata bytes.
    pub fn plan(parts: &[(PathBuf, GgufInfo)]) -> io::Result<Merge> {
        let (first_path, first) = &parts[0];
        let kept: Vec<_> = first.kv_spans.iter().filter(|s| !is_split_key(&s.key)).collect();
        let mut header = Vec::new();
        header.extend_from_slice(b"GGUF");
        put_u32(&mut header, first.version);
        put_u64(&mut header, parts.iter().map(|(_, i)| i.tensors.len() as u64).sum());
        put_u64(&mut header, kept.len() as u64);
        copy_spans(&mut File::open(first_path)?, &kept, &mut header)?;
        let tensors: Vec<(usize, &TensorInfo)> = parts.iter().enumerate().flat_map(|(p, (_, i))| i.tensors.iter().map(move |t| (p, t))).collect();
        let (table, pieces, data_len) = layout(&tensors, first.alignment, |p, t| parts[p].1.data_offset + t.offset);
        header.extend_from_slice(&table);
        pad_to(&mut header, first.alignment);
        let len = header.len() as u64 + data_len;
        Ok(Merge { paths: parts.iter().map(|(p, _)| p.clone()).collect(), header, pieces, len })
    }

    /// The merged file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The merged bytes, read from the parts as they are needed.
    pub fn reader(&self) -> MergedReader<'_> {
        MergedReader { merge: self, header_pos: 0, piece: 0, piece_pos: 0, open: None }
    }
}

/// Appends the bytes of each metadata entry in `spans`, read from `file`, to `out`.
fn copy_spans(file: &mut File, spans: &[&KvSpan], out: &mut Vec<u8>) -> io::Result<()> {
    for span in spans {
        let start = out.len();
        out.resize(start + (span.end - span.start) as usize, 0);
        file.seek(SeekFrom::Start(span.start))?;
        file.read_exact(&mut out[start..])?;
    }
    Ok(())
}

fn is_split_key(key: &str) -> bool {
    key == KEY_NO || key == KEY_COUNT || key == KEY_TENSORS
}

/// The tensor table for `tensors` packed from offset 0 at `alignment`, the data pieces, and the
/// data section's length. `source_offset` gives where a tensor's data starts in its part.
fn layout(tensors: &[(usize, &TensorInfo)], alignment: u64, source_offset: impl Fn(usize, &TensorInfo) -> u64) -> (Vec<u8>, Vec<Piece>, u64) {
    let mut table = Vec::new();
    let mut pieces = Vec::with_capacity(tensors.len());
    let mut at = 0u64;
    for &(part, t) in tensors {
        put_str(&mut table, &t.name);
        put_u32(&mut table, t.dims.len() as u32);
        for &d in &t.dims {
            put_u64(&mut table, d);
        }
        put_u32(&mut table, t.ggml_type);
        put_u64(&mut table, at);
        let padded = t.size_bytes.div_ceil(alignment) * alignment;
        pieces.push(Piece { part, offset: source_offset(part, t), len: t.size_bytes, pad: padded - t.size_bytes });
        at += padded;
    }
    (table, pieces, at)
}

fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    let len = out.len() as u64;
    out.resize((len.div_ceil(alignment) * alignment) as usize, 0);
}

/// Reads a [`Merge`]: the header from memory, then each tensor's bytes from its part. A part
/// that got shorter since it was checked is an error, never a silently short model.
pub struct MergedReader<'a> {
    merge: &'a Merge,
    header_pos: usize,
    piece: usize,
    piece_pos: u64,
    open: Option<(usize, File)>,
}

impl Read for MergedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let header = &self.merge.header;
        if self.header_pos < header.len() {
            let n = buf.len().min(header.len() - self.header_pos);
            buf[..n].copy_from_slice(&header[self.header_pos..self.header_pos + n]);
            self.header_pos += n;
            return Ok(n);
        }
        loop {
            let Some(piece) = self.merge.pieces.get(self.piece) else { return Ok(0) };
            if self.piece_pos < piece.len {
                if self.open.as_ref().is_none_or(|(p, _)| *p != piece.part) {
                    self.open = Some((piece.part, File::open(&self.merge.paths[piece.part])?));
                }
                let (_, file) = self.open.as_mut().expect("opened above");
                if self.piece_pos == 0 {
                    file.seek(SeekFrom::Start(piece.offset))?;
                }
                let want = buf.len().min((piece.len - self.piece_pos) as usize);
                let n = file.read(&mut buf[..want])?;
                if n == 0 && want > 0 {
                    let path = self.merge.paths[piece.part].display();
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{path} ended early: it changed after it was checked")));
                }
                self.piece_pos += n as u64;
                return Ok(n);
            }
            let padded = piece.len + piece.pad;
            let n = buf.len().min((padded - self.piece_pos) as usize);
            buf[..n].fill(0);
            self.piece_pos += n as u64;
            if self.piece_pos == padded {
                self.piece += 1;
                self.piece_pos = 0;
            }
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
        }
    }
}

/// Writes `src` (a validated GGUF whose header is `info`) as `parts` files named
/// `PREFIX-0000i-of-0000n.gguf` in `dir`, as `gguf-split --split-max-tensors` does: the first part
/// keeps all metadata, every part gets the split keys, tensors are shared out in order.
pub fn write_split(src: &Path, info: &GgufInfo, parts: u32, dir: &Path, prefix: &str) -> io::Result<Vec<PathBuf>> {
    let count = info.tensors.len();
    if parts < 2 || parts as usize > count {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("cannot split {count} tensors into {parts} parts")));
    }
    let mut source = File::open(src)?;
    let mut written = Vec::new();
    for no in 0..parts as usize {
        let chunk = &info.tensors[no * count / parts as usize..(no + 1) * count / parts as usize];
        let split_keys = [(KEY_NO, MetaValue::U16(no as u16)), (KEY_COUNT, MetaValue::U16(parts as u16)), (KEY_TENSORS, MetaValue::I32(count as i32))];
        let copied: Vec<_> = if no == 0 { info.kv_spans.iter().filter(|s| !is_split_key(&s.key)).collect() } else { Vec::new() };
        let mut header = Vec::new();
        header.extend_from_slice(b"GGUF");
        put_u32(&mut header, info.version);
        put_u64(&mut header, chunk.len() as u64);
        put_u64(&mut header, (copied.len() + split_keys.len()) as u64);
        copy_spans(&mut source, &copied, &mut header)?;
        for (key, value) in &split_keys {
            put_str(&mut header, key);
            put_u32(&mut header, value.value_type().to_u32());
            put_value(&mut header, value);
        }
        // Later parts carry no general.alignment, so they use the default one.
        let alignment = if no == 0 { info.alignment } else { super::DEFAULT_ALIGNMENT };
        let tensors: Vec<(usize, &TensorInfo)> = chunk.iter().map(|t| (0, t)).collect();
        let (table, pieces, _) = layout(&tensors, alignment, |_, t| info.data_offset + t.offset);
        header.extend_from_slice(&table);
        pad_to(&mut header, alignment);
        let path = dir.join(part_file_name(prefix, no as u32 + 1, parts));
        let mut out = io::BufWriter::new(File::create(&path)?);
        out.write_all(&header)?;
        for piece in pieces {
            source.seek(SeekFrom::Start(piece.offset))?;
            if io::copy(&mut (&mut source).take(piece.len), &mut out)? != piece.len {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} ended inside a tensor", src.display())));
            }
            out.write_all(&vec![0; piece.pad as usize])?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        written.push(path);
    }
    Ok(written)
}
