//! The parser: header, metadata, tensor table, then tensor data bounds by arithmetic only.
//!
//! Every length read from the file is checked against the bytes that are actually left before it
//! drives a loop or an allocation, and all size arithmetic is checked.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::error::GgufError;
use super::types::{
    ggml_block_layout, ggml_type_name, GgufInfo, KvSpan, MetaArray, MetaValue, TensorInfo,
    ValueType,
};

/// Longest metadata key or tensor name read at all (the spec's own cap is 65535).
pub const MAX_NAME_LEN: u64 = 64 * 1024;
/// llama.cpp rejects tensor names of `GGML_MAX_NAME` (64) bytes or more.
pub const MAX_TENSOR_NAME_LEN: u64 = 63;
/// Longest string value; `tokenizer.huggingface.json` can be several MB.
pub const MAX_STRING_LEN: u64 = 64 * 1024 * 1024;
/// No real array comes close (vocabularies are under a few million entries).
pub const MAX_ARRAY_LEN: u64 = 1 << 32;
pub const MAX_KV_COUNT: u64 = 1 << 20;
pub const MAX_TENSOR_COUNT: u64 = 1 << 20;
/// `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal but nothing real nests them; the cap bounds recursion.
pub const MAX_ARRAY_DEPTH: u64 = 8;
/// Arrays up to this many elements are kept in memory, longer ones only summarised.
pub const KEEP_ARRAY_MAX: u64 = 1024;
/// Total elements kept across all arrays, so many small arrays cannot blow up memory either.
pub const KEEP_TOTAL_MAX: u64 = 1 << 18;
pub const DEFAULT_ALIGNMENT: u64 = 32;
pub const MAX_ALIGNMENT: u64 = 1 << 24;

/// Smallest possible metadata entry: empty key (8), value type (4), one-byte value (1).
const MIN_KV_SIZE: u64 = 13;
/// Smallest possible tensor entry: empty name (8), n_dims (4), type (4), offset (8).
const MIN_TENSOR_SIZE: u64 = 24;

type Result<T> = std::result::Result<T, GgufError>;
/// Describes what is being read, for error messages; only called when something is wrong.
type Ctx<'a> = &'a dyn Fn() -> String;

/// Opens `path`, takes its length from the file system and validates it with [`read`].
pub fn read_file(path: &Path) -> Result<GgufInfo> {
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let file = File::open(path).map_err(with_path)?;
    let len = file.metadata().map_err(with_path)?.len();
    read(file, len)
}

/// Parses and validates a GGUF file of `file_len` bytes, reading from the start of `reader`.
/// Only the header, metadata and tensor table are read; tensor data is checked by arithmetic.
/// If the stream turns out shorter than `file_len`, its real length is what gets checked.
pub fn read<R: Read + Seek>(mut reader: R, file_len: u64) -> Result<GgufInfo> {
    let stream_len = reader.seek(SeekFrom::End(0))?;
    let file_len = file_len.min(stream_len);
    reader.seek(SeekFrom::Start(0))?;
    let mut src = Src {
        r: BufReader::with_capacity(64 * 1024, reader),
        pos: 0,
        len: file_len,
        keep_left: KEEP_TOTAL_MAX,
    };

    let magic: [u8; 4] = src.bytes(&|| "the GGUF magic number".into())?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = src.u32(&|| "the format version".into())?;
    match version {
        2 | 3 => {}
        // A big-endian file's version reads as 0x0?000000 here.
        v if (1..=3).contains(&v.swap_bytes()) => {
            return Err(GgufError::BigEndian {
                version: v.swap_bytes(),
            })
        }
        v => return Err(GgufError::UnsupportedVersion(v)),
    }

    let n_tensors = src.u64(&|| "the tensor count".into())?;
    let n_kv = src.u64(&|| "the metadata key count".into())?;
    // Nonsense counts fail here; whether they fit the file is checked where each table starts.
    if n_tensors > MAX_TENSOR_COUNT {
        return Err(GgufError::TooLarge {
            what: "the tensor count".into(),
            value: n_tensors,
            limit: MAX_TENSOR_COUNT,
        });
    }
    src.check_count(
        n_kv,
        MAX_KV_COUNT,
        MIN_KV_SIZE,
        &|| "the metadata key count".into(),
        &|| format!("the metadata table ({n_kv} keys)"),
    )?;

    let (metadata, kv_spans) = src.metadata(n_kv)?;
    let alignment = alignment(&metadata)?;
    let tensors = src.tensor_table(n_tensors)?;

    let data_offset = align_up(src.pos, alignment).ok_or_else(|| GgufError::TooLarge {
        what: "the data section offset".into(),
        value: src.pos,
        limit: file_len,
    })?;
    check_tensor_data(&tensors, data_offset, alignment, file_len)?;

    Ok(GgufInfo {
        version,
        metadata,
        tensors,
        data_offset,
        alignment,
        file_len,
        kv_spans,
    })
}

fn alignment(metadata: &BTreeMap<String, MetaValue>) -> Result<u64> {
    match metadata.get("general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        // llama.cpp insists on a u32 here, so we do too.
        Some(MetaValue::U32(a)) if a.is_power_of_two() && u64::from(*a) <= MAX_ALIGNMENT => {
            Ok(u64::from(*a))
        }
        Some(other) => {
            let found = match other {
                // Do not echo a string or array that may be megabytes long.
                MetaValue::String(_) | MetaValue::Array(_) => {
                    format!("a {:?} value", other.value_type())
                }
                _ => format!("{other:?}"),
            };
            Err(GgufError::InvalidAlignment {
                found,
                limit: MAX_ALIGNMENT,
            })
        }
    }
}

fn align_up(n: u64, alignment: u64) -> Option<u64> {
    let mask = alignment.checked_sub(1)?;
    Some(n.checked_add(mask)? & !mask)
}

/// Byte size of a tensor, with llama.cpp's shape rules: known type, at most 4 dims, each and the
/// product within i64, rows a whole number of blocks.
fn tensor_size(name: &str, dims: &[u64], ty: u32) -> Result<u64> {
    let (block, type_size) = ggml_block_layout(ty).ok_or_else(|| GgufError::UnknownTensorType {
        tensor: name.into(),
        ty,
    })?;
    let bad = |reason: String| GgufError::BadTensorShape {
        tensor: name.into(),
        dims: dims.to_vec(),
        reason,
    };
    let max = i64::MAX as u64; // ggml counts elements in int64_t
    let mut elements: u64 = 1;
    for &d in dims {
        elements = elements
            .checked_mul(d)
            .filter(|&e| e <= max)
            .ok_or_else(|| bad("the element count overflows 64 bits".into()))?;
    }
    let row = dims.first().copied().unwrap_or(1);
    if row % block != 0 {
        let ty_name = ggml_type_name(ty).unwrap_or("?");
        return Err(bad(format!(
            "rows of {row} elements are not a whole number of {ty_name} blocks of {block}"
        )));
    }
    (elements / block)
        .checked_mul(type_size)
        .ok_or_else(|| bad("the byte size overflows 64 bits".into()))
}

/// llama.cpp requires tensor data packed in table order, each tensor padded to the alignment;
/// checking that here also rules out overlaps and gaps.
fn check_tensor_data(
    tensors: &[TensorInfo],
    data_offset: u64,
    alignment: u64,
    file_len: u64,
) -> Result<()> {
    let mut seen = HashSet::with_capacity(tensors.len());
    for t in tensors {
        if !seen.insert(t.name.as_str()) {
            return Err(GgufError::DuplicateTensor(t.name.clone()));
        }
    }
    let mut expected: u64 = 0;
    for t in tensors {
        if t.offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                tensor: t.name.clone(),
                offset: t.offset,
                alignment,
            });
        }
        if t.offset != expected {
            return Err(GgufError::TensorOffsetMismatch {
                tensor: t.name.clone(),
                offset: t.offset,
                expected,
            });
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.size_bytes));
        if !matches!(end, Some(end) if end <= file_len) {
            return Err(GgufError::TensorOutOfBounds {
                tensor: t.name.clone(),
                start: start.unwrap_or(u64::MAX),
                size: t.size_bytes,
                file_len,
            });
        }
        // Cannot overflow: offset + size <= file_len, checked just above.
        expected = align_up(t.offset.saturating_add(t.size_bytes), alignment).unwrap_or(u64::MAX);
    }
    Ok(())
}

/// Clips a name for an error message (names may be 64 KiB long).
fn clip(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The input plus where we are in it; all reads go through the bounds checks here.
struct Src<R> {
    r: BufReader<R>,
    pos: u64,
    len: u64,
    /// How many more array elements may be kept in memory (see [`KEEP_TOTAL_MAX`]).
    keep_left: u64,
}

impl<R: Read + Seek> Src<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn truncated(&self, what: Ctx) -> GgufError {
        GgufError::Truncated {
            what: what(),
            offset: self.pos,
        }
    }

    fn ensure(&self, n: u64, what: Ctx) -> Result<()> {
        if n > self.remaining() {
            return Err(self.truncated(what));
        }
        Ok(())
    }

    /// A count from the file: above `cap` it is nonsense; otherwise `count` items of at least
    /// `min_size` bytes must fit in what is left (else the file is cut short, or the count corrupt).
    fn check_count(
        &self,
        count: u64,
        cap: u64,
        min_size: u64,
        counter: Ctx,
        table: Ctx,
    ) -> Result<()> {
        if count > cap {
            return Err(GgufError::TooLarge {
                what: counter(),
                value: count,
                limit: cap,
            });
        }
        self.ensure(count.saturating_mul(min_size), table)
    }

    fn fill(&mut self, buf: &mut [u8], what: Ctx) -> Result<()> {
        self.ensure(buf.len() as u64, what)?;
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            // The stream is shorter than the length we were told.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.truncated(what)),
            Err(e) => Err(e.into()),
        }
    }

    fn bytes<const N: usize>(&mut self, what: Ctx) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn u32(&mut self, what: Ctx) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: Ctx) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    fn skip(&mut self, n: u64, what: Ctx) -> Result<()> {
        self.ensure(n, what)?;
        let mut left = n;
        while left > 0 {
            let step = left.min(i64::MAX as u64);
            self.r.seek_relative(step as i64)?;
            left -= step;
        }
        self.pos += n;
        Ok(())
    }

    /// Reads a string's length and checks it against `limit` and the bytes left.
    fn string_len(&mut self, limit: u64, what: Ctx) -> Result<u64> {
        let len = self.u64(&|| format!("{} length", what()))?;
        if len > limit {
            return Err(GgufError::TooLarge {
                what: format!("{} length", what()),
                value: len,
                limit,
            });
        }
        self.ensure(len, &|| format!("{} ({len} bytes)", what()))?;
        Ok(len)
    }

    fn raw_string(&mut self, limit: u64, what: Ctx) -> Result<Vec<u8>> {
        let len = self.string_len(limit, what)?;
        // Safe to allocate: len <= limit and len <= the bytes left in the file.
        let len = usize::try_from(len).map_err(|_| GgufError::TooLarge {
            what: format!("{} length", what()),
            value: len,
            limit,
        })?;
        let mut buf = vec![0u8; len];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    /// Keys and tensor names must be UTF-8 (they are compared and shown to users).
    fn name(&mut self, limit: u64, what: Ctx) -> Result<String> {
        let offset = self.pos;
        String::from_utf8(self.raw_string(limit, what)?).map_err(|_| GgufError::InvalidUtf8 {
            what: what(),
            offset,
        })
    }

    fn metadata(&mut self, n_kv: u64) -> Result<(BTreeMap<String, MetaValue>, Vec<KvSpan>)> {
        let mut metadata = BTreeMap::new();
        let mut spans = Vec::new();
        for i in 0..n_kv {
            let start = self.pos;
            let key = self.name(MAX_NAME_LEN, &|| format!("metadata key #{i} name"))?;
            let ctx = || format!("metadata key #{i} ('{}')", clip(&key));
            let raw = self.u32(&|| format!("{} value type", ctx()))?;
            let ty = ValueType::from_u32(raw).ok_or_else(|| GgufError::UnknownValueType {
                what: ctx(),
                ty: raw,
            })?;
            let value = self.value(ty, 0, &|| format!("{} value", ctx()))?;
            if metadata.contains_key(&key) {
                return Err(GgufError::DuplicateKey(key));
            }
            spans.push(KvSpan {
                key: key.clone(),
                start,
                end: self.pos,
            });
            metadata.insert(key, value);
        }
        Ok((metadata, spans))
    }

    fn value(&mut self, ty: ValueType, depth: u64, what: Ctx) -> Result<MetaValue> {
        Ok(match ty {
            ValueType::U8 => MetaValue::U8(u8::from_le_bytes(self.bytes(what)?)),
            ValueType::I8 => MetaValue::I8(i8::from_le_bytes(self.bytes(what)?)),
            ValueType::U16 => MetaValue::U16(u16::from_le_bytes(self.bytes(what)?)),
            ValueType::I16 => MetaValue::I16(i16::from_le_bytes(self.bytes(what)?)),
            ValueType::U32 => MetaValue::U32(u32::from_le_bytes(self.bytes(what)?)),
            ValueType::I32 => MetaValue::I32(i32::from_le_bytes(self.bytes(what)?)),
            ValueType::F32 => MetaValue::F32(f32::from_le_bytes(self.bytes(what)?)),
            ValueType::U64 => MetaValue::U64(u64::from_le_bytes(self.bytes(what)?)),
            ValueType::I64 => MetaValue::I64(i64::from_le_bytes(self.bytes(what)?)),
            ValueType::F64 => MetaValue::F64(f64::from_le_bytes(self.bytes(what)?)),
            // Like llama.cpp, any non-zero byte is true.
            ValueType::Bool => MetaValue::Bool(self.bytes::<1>(what)? != [0]),
            // Values are shown, never trusted: invalid UTF-8 (odd byte tokens) is replaced, not fatal.
            ValueType::String => MetaValue::String(
                match String::from_utf8(self.raw_string(MAX_STRING_LEN, what)?) {
                    Ok(s) => s,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                },
            ),
            ValueType::Array => MetaValue::Array(self.array(depth + 1, true, what)?),
        })
    }

    /// Validates a value without keeping it.
    fn skip_value(&mut self, ty: ValueType, depth: u64, what: Ctx) -> Result<()> {
        if let Some(size) = ty.fixed_size() {
            return self.skip(size, what);
        }
        match ty {
            ValueType::Array => self.array(depth + 1, false, what).map(drop),
            _ => {
                let len = self.string_len(MAX_STRING_LEN, what)?;
                self.skip(len, what)
            }
        }
    }

    fn array(&mut self, depth: u64, keep: bool, what: Ctx) -> Result<MetaArray> {
        if depth > MAX_ARRAY_DEPTH {
            let what = format!("{} array nesting depth", what());
            return Err(GgufError::TooLarge {
                what,
                value: depth,
                limit: MAX_ARRAY_DEPTH,
            });
        }
        let raw = self.u32(&|| format!("{} array element type", what()))?;
        let element_type = ValueType::from_u32(raw).ok_or_else(|| GgufError::UnknownValueType {
            what: format!("{} array elements", what()),
            ty: raw,
        })?;
        let len = self.u64(&|| format!("{} array length", what()))?;
        // Each element takes at least min_size bytes, so this bounds every loop below.
        self.check_count(
            len,
            MAX_ARRAY_LEN,
            element_type.min_size(),
            &|| format!("{} array length", what()),
            &|| format!("{} array ({len} elements of type {element_type:?})", what()),
        )?;

        if keep && len <= KEEP_ARRAY_MAX && len <= self.keep_left {
            self.keep_left -= len;
            let mut values = Vec::with_capacity(len as usize); // len <= KEEP_ARRAY_MAX
            for j in 0..len {
                values
                    .push(self.value(element_type, depth, &|| format!("{} element #{j}", what()))?);
            }
            return Ok(MetaArray {
                element_type,
                len,
                values: Some(values),
            });
        }
        match element_type.fixed_size() {
            // len * size <= remaining, checked above.
            Some(size) => self.skip(len.saturating_mul(size), what)?,
            None => {
                for j in 0..len {
                    self.skip_value(element_type, depth, &|| format!("{} element #{j}", what()))?;
                }
            }
        }
        Ok(MetaArray {
            element_type,
            len,
            values: None,
        })
    }

    fn tensor_table(&mut self, n_tensors: u64) -> Result<Vec<TensorInfo>> {
        self.check_count(
            n_tensors,
            MAX_TENSOR_COUNT,
            MIN_TENSOR_SIZE,
            &|| "the tensor count".into(),
            &|| format!("the tensor table ({n_tensors} tensors)"),
        )?;
        // Bounded by the bytes left now, but grow rather than trust it.
        let mut tensors = Vec::with_capacity(n_tensors.min(4096) as usize);
        for i in 0..n_tensors {
            let name = self.name(MAX_NAME_LEN, &|| format!("tensor #{i} name"))?;
            if name.len() as u64 > MAX_TENSOR_NAME_LEN {
                return Err(GgufError::TooLarge {
                    what: format!("tensor #{i} name length ('{}')", clip(&name)),
                    value: name.len() as u64,
                    limit: MAX_TENSOR_NAME_LEN,
                });
            }
            let ctx = || format!("tensor #{i} ('{name}')");
            let n_dims = self.u32(&|| format!("{} dimension count", ctx()))?;
            if n_dims > MAX_DIMS {
                let what = format!("{} dimension count", ctx());
                return Err(GgufError::TooLarge {
                    what,
                    value: n_dims.into(),
                    limit: MAX_DIMS.into(),
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize); // <= MAX_DIMS
            for d in 0..n_dims {
                dims.push(self.u64(&|| format!("{} dimension #{d}", ctx()))?);
            }
            let ggml_type = self.u32(&|| format!("{} type", ctx()))?;
            let offset = self.u64(&|| format!("{} data offset", ctx()))?;
            let size_bytes = tensor_size(&name, &dims, ggml_type)?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                size_bytes,
            });
        }
        Ok(tensors)
    }
}
