//! Why a GGUF file was rejected, worded for the person who has to fix it.

/// Every way a GGUF file can fail validation. Offsets are absolute byte positions in the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read the GGUF file: {0}")]
    Io(#[from] std::io::Error),

    #[error(
        "not a GGUF file: it starts with \"{}\" instead of \"GGUF\"; pick the .gguf model file itself",
        .found.escape_ascii()
    )]
    BadMagic { found: [u8; 4] },

    #[error(
        "big-endian GGUF files are not supported (version {version} is stored byte-swapped); \
         use the little-endian build of this model"
    )]
    BigEndian { version: u32 },

    #[error(
        "unsupported GGUF version {0}: only versions 2 and 3 can be read; \
         re-download the model or convert it with a current llama.cpp"
    )]
    UnsupportedVersion(u32),

    #[error(
        "truncated GGUF: {what} at byte {offset} runs past the end of the file; \
         the download or copy is incomplete, fetch the file again"
    )]
    Truncated { what: String, offset: u64 },

    #[error("corrupt GGUF: {what} is {value}, above the limit of {limit}")]
    TooLarge {
        what: String,
        value: u64,
        limit: u64,
    },

    #[error("corrupt GGUF: {what} has unknown value type {ty} (known types are 0 to 12)")]
    UnknownValueType { what: String, ty: u32 },

    #[error("corrupt GGUF: {what} is not valid UTF-8 (at byte {offset})")]
    InvalidUtf8 { what: String, offset: u64 },

    #[error("corrupt GGUF: metadata key '{0}' appears twice")]
    DuplicateKey(String),

    #[error(
        "corrupt GGUF: general.alignment must be a u32 power of two up to {limit}, found {found}"
    )]
    InvalidAlignment { found: String, limit: u64 },

    #[error(
        "tensor '{tensor}' has unknown or unsupported ggml type {ty}; the file is corrupt \
         or needs a newer llama.cpp than airlock ships"
    )]
    UnknownTensorType { tensor: String, ty: u32 },

    #[error("corrupt GGUF: tensor '{tensor}' has an invalid shape {dims:?}: {reason}")]
    BadTensorShape {
        tensor: String,
        dims: Vec<u64>,
        reason: String,
    },

    #[error("corrupt GGUF: tensor name '{0}' appears twice")]
    DuplicateTensor(String),

    #[error(
        "corrupt GGUF: tensor '{tensor}' data offset {offset} is not a multiple of the \
         alignment {alignment}"
    )]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },

    #[error(
        "corrupt GGUF: tensor '{tensor}' starts at data offset {offset}, but the tensors before it \
         end at {expected} (tensor data must be stored in table order, each padded to the alignment)"
    )]
    TensorOffsetMismatch {
        tensor: String,
        offset: u64,
        expected: u64,
    },

    #[error(
        "truncated GGUF: tensor '{tensor}' needs {size} bytes at byte {start}, past the end of \
         the file ({file_len} bytes); the download or copy is incomplete, fetch the file again"
    )]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        size: u64,
        file_len: u64,
    },
}
