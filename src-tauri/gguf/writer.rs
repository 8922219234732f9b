//! A small GGUF writer for tests and fixtures: tiny valid models with zeroed, aligned tensor data,
//! plus a few knobs (`version`, `kv_raw`, `tensor_at`) for writing deliberately broken files.
//!
//! ```
//! use airlock::gguf::{self, writer::GgufBuilder, GGML_TYPE_F32};
//! let bytes = GgufBuilder::new()
//!     .kv_str("general.architecture", "llama")
//!     .kv_u32("llama.context_length", 4096)
//!     .tensor("token_embd.weight", &[8, 4], GGML_TYPE_F32)
//!     .build();
//! let info = gguf::read(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
//! assert_eq!(info.context_length(), Some(4096));
//! ```

use std::io;
use std::path::Path;

use super::reader::MAX_ALIGNMENT;
use super::types::{ggml_block_layout, MetaArray, MetaValue, ValueType};

/// Above this much tensor data the builder writes the header and table only (a test asking for a
/// huge tensor wants a file that claims one, not gigabytes of zeros).
pub const MAX_BUILDER_DATA: u64 = 1 << 30;

#[derive(Debug, Clone)]
enum Entry {
    Value(MetaValue),
    /// A value type id and its encoded payload, written verbatim.
    Raw(u32, Vec<u8>),
}

#[derive(Debug, Clone)]
struct Tensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: u32,
    offset: Option<u64>,
}

/// Builds a GGUF file in memory. Keys and tensors are written in the order they were added.
#[derive(Debug, Clone)]
pub struct GgufBuilder {
    version: u32,
    kvs: Vec<(String, Entry)>,
    tensors: Vec<Tensor>,
}

impl Default for GgufBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufBuilder {
    /// An empty GGUF v3 file.
    pub fn new() -> Self {
        GgufBuilder {
            version: 3,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// The version field to write (2 and 3 are valid; anything else makes a broken file).
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    pub fn kv(mut self, key: &str, value: MetaValue) -> Self {
        self.kvs.push((key.to_string(), Entry::Value(value)));
        self
    }

    /// A key with an arbitrary value type id and payload (for unknown or malformed values).
    pub fn kv_raw(mut self, key: &str, value_type: u32, payload: &[u8]) -> Self {
        self.kvs
            .push((key.to_string(), Entry::Raw(value_type, payload.to_vec())));
        self
    }

    pub fn kv_str(self, key: &str, value: &str) -> Self {
        self.kv(key, MetaValue::String(value.to_string()))
    }
    pub fn kv_u8(self, key: &str, value: u8) -> Self {
        self.kv(key, MetaValue::U8(value))
    }
    pub fn kv_i8(self, key: &str, value: i8) -> Self {
        self.kv(key, MetaValue::I8(value))
    }
    pub fn kv_u16(self, key: &str, value: u16) -> Self {
        self.kv(key, MetaValue::U16(value))
    }
    pub fn kv_i16(self, key: &str, value: i16) -> Self {
        self.kv(key, MetaValue::I16(value))
    }
    pub fn kv_u32(self, key: &str, value: u32) -> Self {
        self.kv(key, MetaValue::U32(value))
    }
    pub fn kv_i32(self, key: &str, value: i32) -> Self {
        self.kv(key, MetaValue::I32(value))
    }
    pub fn kv_u64(self, key: &str, value: u64) -> Self {
        self.kv(key, MetaValue::U64(value))
    }
    pub fn kv_i64(self, key: &str, value: i64) -> Self {
        self.kv(key, MetaValue::I64(value))
    }
    pub fn kv_f32(self, key: &str, value: f32) -> Self {
        self.kv(key, MetaValue::F32(value))
    }
    pub fn kv_f64(self, key: &str, value: f64) -> Self {
        self.kv(key, MetaValue::F64(value))
    }
    pub fn kv_bool(self, key: &str, value: bool) -> Self {
        self.kv(key, MetaValue::Bool(value))
    }

    /// An array whose elements are all of `element_type`.
    pub fn kv_array(self, key: &str, element_type: ValueType, values: Vec<MetaValue>) -> Self {
        let len = values.len() as u64;
        self.kv(
            key,
            MetaValue::Array(MetaArray {
                element_type,
                len,
                values: Some(values),
            }),
        )
    }
    pub fn kv_array_str(self, key: &str, values: &[&str]) -> Self {
        let values = values
            .iter()
            .map(|s| MetaValue::String(s.to_string()))
            .collect();
        self.kv_array(key, ValueType::String, values)
    }
    pub fn kv_array_u32(self, key: &str, values: &[u32]) -> Self {
        self.kv_array(
            key,
            ValueType::U32,
            values.iter().map(|&v| MetaValue::U32(v)).collect(),
        )
    }
    pub fn kv_array_i32(self, key: &str, values: &[i32]) -> Self {
        self.kv_array(
            key,
            ValueType::I32,
            values.iter().map(|&v| MetaValue::I32(v)).collect(),
        )
    }
    pub fn kv_array_f32(self, key: &str, values: &[f32]) -> Self {
        self.kv_array(
            key,
            ValueType::F32,
            values.iter().map(|&v| MetaValue::F32(v)).collect(),
        )
    }

    /// Sets `general.alignment` (a u32, as llama.cpp requires); the layout follows it.
    pub fn alignment(self, alignment: u32) -> Self {
        self.kv_u32("general.alignment", alignment)
    }

    /// A tensor with zeroed data, placed after the previous one. `dims[0]` is the row length.
    pub fn tensor(mut self, name: &str, dims: &[u64], ggml_type: u32) -> Self {
        self.tensors.push(Tensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            ggml_type,
            offset: None,
        });
        self
    }

    /// Like [`tensor`](Self::tensor) but records `offset` in the table instead of the right one.
    pub fn tensor_at(mut self, name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> Self {
        self.tensors.push(Tensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            ggml_type,
            offset: Some(offset),
        });
        self
    }

    /// The alignment the layout uses: a valid `general.alignment` u32, else the default 32
    /// (so an absurd alignment makes a small broken file, not gigabytes of padding).
    fn layout_alignment(&self) -> u64 {
        self.kvs
            .iter()
            .rev()
            .find_map(|(k, e)| match e {
                Entry::Value(MetaValue::U32(a))
                    if k == "general.alignment"
                        && a.is_power_of_two()
                        && u64::from(*a) <= MAX_ALIGNMENT =>
                {
                    Some(u64::from(*a))
                }
                _ => None,
            })
            .unwrap_or(32)
    }

    pub fn build(&self) -> Vec<u8> {
        let alignment = self.layout_alignment();
        let pad = |n: u64| n.div_ceil(alignment).saturating_mul(alignment);
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        put_u32(&mut out, self.version);
        put_u64(&mut out, self.tensors.len() as u64);
        put_u64(&mut out, self.kvs.len() as u64);
        for (key, entry) in &self.kvs {
            put_str(&mut out, key);
            match entry {
                Entry::Value(v) => {
                    put_u32(&mut out, v.value_type().to_u32());
                    put_value(&mut out, v);
                }
                Entry::Raw(ty, payload) => {
                    put_u32(&mut out, *ty);
                    out.extend_from_slice(payload);
                }
            }
        }
        let mut data_len: u64 = 0;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            put_u32(&mut out, t.dims.len() as u32);
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            put_u32(&mut out, t.ggml_type);
            put_u64(&mut out, t.offset.unwrap_or(data_len));
            data_len = pad(data_len.saturating_add(tensor_bytes(&t.dims, t.ggml_type)));
        }
        if data_len <= MAX_BUILDER_DATA && !self.tensors.is_empty() {
            let start = pad(out.len() as u64);
            out.resize((start + data_len) as usize, 0);
        }
        out
    }

    pub fn write_to(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.build())
    }
}

/// Data size of a tensor; 0 for unknown types or sizes that overflow (those files are broken anyway).
fn tensor_bytes(dims: &[u64], ggml_type: u32) -> u64 {
    let Some((block, type_size)) = ggml_block_layout(ggml_type) else {
        return 0;
    };
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .and_then(|n| (n / block).checked_mul(type_size))
        .unwrap_or(0)
}

pub(super) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(super) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Array(a) => {
            // A summarised array has no elements to write; it is written empty.
            let values = a.values.as_deref().unwrap_or(&[]);
            put_u32(out, a.element_type.to_u32());
            put_u64(out, values.len() as u64);
            for v in values {
                put_value(out, v);
            }
        }
    }
}
