//! The parsed model description ([`GgufInfo`]) and the ggml type tables it is checked against.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// A GGUF metadata value type, as stored on disk (`gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    pub fn from_u32(raw: u32) -> Option<Self> {
        use ValueType::*;
        Some(match raw {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    pub fn to_u32(self) -> u32 {
        use ValueType::*;
        match self {
            U8 => 0,
            I8 => 1,
            U16 => 2,
            I16 => 3,
            U32 => 4,
            I32 => 5,
            F32 => 6,
            Bool => 7,
            String => 8,
            Array => 9,
            U64 => 10,
            I64 => 11,
            F64 => 12,
        }
    }

    /// Encoded size of a fixed-size value; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The fewest bytes one value of this type can take on disk. Array lengths are checked against
    /// `len * min_size <= bytes remaining`, so a hostile length fails before any loop or allocation.
    pub fn min_size(self) -> u64 {
        match self {
            ValueType::String => 8,    // u64 length, empty body
            ValueType::Array => 4 + 8, // element type + length
            other => other.fixed_size().unwrap_or(1),
        }
    }
}

/// A metadata value. Serialises untagged (`"gemma3"`, `32768`, `[...]`), like Ollama's `model_info`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(MetaArray),
}

/// A metadata array. Small arrays keep their elements; large ones (the tokenizer's vocabulary) are
/// validated while reading but only summarised, so a 262k-entry vocabulary costs no memory here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetaArray {
    pub element_type: ValueType,
    pub len: u64,
    /// `Some` when the elements were kept, `None` when the array was only summarised.
    pub values: Option<Vec<MetaValue>>,
}

impl MetaArray {
    pub fn values(&self) -> Option<&[MetaValue]> {
        self.values.as_deref()
    }
}

impl MetaValue {
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::String(_) => ValueType::String,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F64(_) => ValueType::F64,
            MetaValue::Array(_) => ValueType::Array,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any integer type holding a non-negative value (converters disagree on u32 vs u64).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&MetaArray> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One entry of the tensor table, already checked against the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the row length (the fastest-moving dimension).
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Relative to [`GgufInfo::data_offset`].
    pub offset: u64,
    pub size_bytes: u64,
}

impl TensorInfo {
    /// Number of elements (validated not to overflow when the file was read).
    pub fn element_count(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    pub fn type_name(&self) -> Option<&'static str> {
        ggml_type_name(self.ggml_type)
    }
}

/// Everything airlock knows about a GGUF file after validating it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GgufInfo {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute byte offset of the (aligned) tensor data section.
    pub data_offset: u64,
    pub alignment: u64,
    pub file_len: u64,
    /// Where each metadata entry (key, type and value) lies in the file, in file order: a merge
    /// of split parts copies them byte for byte (long arrays are only summarised in `metadata`).
    #[serde(skip)]
    pub kv_spans: Vec<KvSpan>,
}

/// A metadata entry's key and its byte range `[start, end)` in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvSpan {
    pub key: String,
    pub start: u64,
    pub end: u64,
}

impl GgufInfo {
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(MetaValue::as_str)
    }

    /// Any integer type, as long as the value is non-negative.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(MetaValue::as_u64)
    }

    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// Sum of all tensors' element counts (what Ollama shows as "parameters").
    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.element_count()))
    }

    pub fn file_type(&self) -> Option<u32> {
        self.get_u64("general.file_type")
            .and_then(|v| u32::try_from(v).ok())
    }

    /// "Q4_K_M", "F16", … from `general.file_type` like Ollama's `quantization_level`; without a
    /// known file type, the ggml type holding the most elements ("Q8_0"); "unknown" if no tensors.
    pub fn quantization(&self) -> String {
        if let Some(name) = self.file_type().and_then(file_type_name) {
            return name.to_string();
        }
        let mut elements: HashMap<u32, u64> = HashMap::new();
        for t in &self.tensors {
            let e = elements.entry(t.ggml_type).or_insert(0);
            *e = e.saturating_add(t.element_count());
        }
        // Ties go to the lower type id so the answer does not depend on hash order.
        elements
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .and_then(|(ty, _)| ggml_type_name(ty))
            .unwrap_or("unknown")
            .to_string()
    }

    fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.get_u64(&format!("{arch}.{suffix}"))
    }

    pub fn context_length(&self) -> Option<u64> {
        self.arch_u64("context_length")
    }

    pub fn embedding_length(&self) -> Option<u64> {
        self.arch_u64("embedding_length")
    }

    /// Number of transformer layers.
    pub fn block_count(&self) -> Option<u64> {
        self.arch_u64("block_count")
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.get_str("tokenizer.chat_template")
    }

    pub fn license(&self) -> Option<&str> {
        self.get_str("general.license")
    }
}

// ggml type ids, matching `enum ggml_type` in ggml.h (ids 4, 5, 31-33 and 36-38 were removed).
pub const GGML_TYPE_F32: u32 = 0;
pub const GGML_TYPE_F16: u32 = 1;
pub const GGML_TYPE_Q4_0: u32 = 2;
pub const GGML_TYPE_Q4_1: u32 = 3;
pub const GGML_TYPE_Q5_0: u32 = 6;
pub const GGML_TYPE_Q5_1: u32 = 7;
pub const GGML_TYPE_Q8_0: u32 = 8;
pub const GGML_TYPE_Q8_1: u32 = 9;
pub const GGML_TYPE_Q2_K: u32 = 10;
pub const GGML_TYPE_Q3_K: u32 = 11;
pub const GGML_TYPE_Q4_K: u32 = 12;
pub const GGML_TYPE_Q5_K: u32 = 13;
pub const GGML_TYPE_Q6_K: u32 = 14;
pub const GGML_TYPE_Q8_K: u32 = 15;
pub const GGML_TYPE_IQ2_XXS: u32 = 16;
pub const GGML_TYPE_IQ2_XS: u32 = 17;
pub const GGML_TYPE_IQ3_XXS: u32 = 18;
pub const GGML_TYPE_IQ1_S: u32 = 19;
pub const GGML_TYPE_IQ4_NL: u32 = 20;
pub const GGML_TYPE_IQ3_S: u32 = 21;
pub const GGML_TYPE_IQ2_S: u32 = 22;
pub const GGML_TYPE_IQ4_XS: u32 = 23;
pub const GGML_TYPE_I8: u32 = 24;
pub const GGML_TYPE_I16: u32 = 25;
pub const GGML_TYPE_I32: u32 = 26;
pub const GGML_TYPE_I64: u32 = 27;
pub const GGML_TYPE_F64: u32 = 28;
pub const GGML_TYPE_IQ1_M: u32 = 29;
pub const GGML_TYPE_BF16: u32 = 30;
pub const GGML_TYPE_TQ1_0: u32 = 34;
pub const GGML_TYPE_TQ2_0: u32 = 35;
pub const GGML_TYPE_MXFP4: u32 = 39;
pub const GGML_TYPE_NVFP4: u32 = 40;
pub const GGML_TYPE_Q1_0: u32 = 41;
pub const GGML_TYPE_Q2_0: u32 = 42;

/// (name, elements per block, bytes per block), as in ggml.c's `type_traits` / ggml-common.h.
fn ggml_type_traits(t: u32) -> Option<(&'static str, u64, u64)> {
    const QK_K: u64 = 256;
    Some(match t {
        GGML_TYPE_F32 => ("F32", 1, 4),
        GGML_TYPE_F16 => ("F16", 1, 2),
        GGML_TYPE_Q4_0 => ("Q4_0", 32, 18),
        GGML_TYPE_Q4_1 => ("Q4_1", 32, 20),
        GGML_TYPE_Q5_0 => ("Q5_0", 32, 22),
        GGML_TYPE_Q5_1 => ("Q5_1", 32, 24),
        GGML_TYPE_Q8_0 => ("Q8_0", 32, 34),
        GGML_TYPE_Q8_1 => ("Q8_1", 32, 36),
        GGML_TYPE_Q2_K => ("Q2_K", QK_K, 84),
        GGML_TYPE_Q3_K => ("Q3_K", QK_K, 110),
        GGML_TYPE_Q4_K => ("Q4_K", QK_K, 144),
        GGML_TYPE_Q5_K => ("Q5_K", QK_K, 176),
        GGML_TYPE_Q6_K => ("Q6_K", QK_K, 210),
        GGML_TYPE_Q8_K => ("Q8_K", QK_K, 292),
        GGML_TYPE_IQ2_XXS => ("IQ2_XXS", QK_K, 66),
        GGML_TYPE_IQ2_XS => ("IQ2_XS", QK_K, 74),
        GGML_TYPE_IQ3_XXS => ("IQ3_XXS", QK_K, 98),
        GGML_TYPE_IQ1_S => ("IQ1_S", QK_K, 50),
        GGML_TYPE_IQ4_NL => ("IQ4_NL", 32, 18),
        GGML_TYPE_IQ3_S => ("IQ3_S", QK_K, 110),
        GGML_TYPE_IQ2_S => ("IQ2_S", QK_K, 82),
        GGML_TYPE_IQ4_XS => ("IQ4_XS", QK_K, 136),
        GGML_TYPE_I8 => ("I8", 1, 1),
        GGML_TYPE_I16 => ("I16", 1, 2),
        GGML_TYPE_I32 => ("I32", 1, 4),
        GGML_TYPE_I64 => ("I64", 1, 8),
        GGML_TYPE_F64 => ("F64", 1, 8),
        GGML_TYPE_IQ1_M => ("IQ1_M", QK_K, 56),
        GGML_TYPE_BF16 => ("BF16", 1, 2),
        GGML_TYPE_TQ1_0 => ("TQ1_0", QK_K, 54),
        GGML_TYPE_TQ2_0 => ("TQ2_0", QK_K, 66),
        GGML_TYPE_MXFP4 => ("MXFP4", 32, 17),
        GGML_TYPE_NVFP4 => ("NVFP4", 64, 36),
        GGML_TYPE_Q1_0 => ("Q1_0", 128, 18),
        GGML_TYPE_Q2_0 => ("Q2_0", 64, 18),
        _ => return None,
    })
}

/// "F32", "Q4_K", "IQ2_XXS", "BF16", … (Ollama's spelling); `None` for unknown or removed ids.
pub fn ggml_type_name(t: u32) -> Option<&'static str> {
    ggml_type_traits(t).map(|(name, _, _)| name)
}

/// `(elements per block, bytes per block)` of a ggml type, e.g. Q4_K → (256, 144).
pub fn ggml_block_layout(t: u32) -> Option<(u64, u64)> {
    ggml_type_traits(t).map(|(_, block, size)| (block, size))
}

/// `general.file_type` (llama.cpp's `llama_ftype`) → Ollama's quantization name.
pub fn file_type_name(ft: u32) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4",
        39 => "NVFP4",
        40 => "Q1_0",
        41 => "Q2_0",
        _ => return None,
    })
}

/// Parameter count the way Ollama prints it (`format.HumanNumber`): "268.10M", "8.0B", "7B", "500K".
pub fn format_parameter_count(n: u64) -> String {
    const THOUSAND: u64 = 1_000;
    const MILLION: u64 = 1_000_000;
    const BILLION: u64 = 1_000_000_000;
    let scaled = |unit: u64, decimals: usize, suffix: &str| {
        let v = n as f64 / unit as f64;
        if v == v.floor() {
            format!("{v:.0}{suffix}")
        } else {
            format!("{v:.decimals$}{suffix}")
        }
    };
    if n >= BILLION {
        scaled(BILLION, 1, "B")
    } else if n >= MILLION {
        scaled(MILLION, 2, "M")
    } else if n >= THOUSAND {
        format!("{:.0}K", n as f64 / THOUSAND as f64)
    } else {
        n.to_string()
    }
}
