//! The GGUF reader on the real test model.

use std::time::Instant;

use airlock::gguf::{format_parameter_count, read_file, MetaValue, ValueType};

use crate::common::real_model;

/// The real test model (its absence fails the test instead of skipping it).
#[test]
fn reads_the_real_gemma3_270m_model() {
    let path = real_model();
    let start = Instant::now();
    let info = read_file(&path).unwrap();
    let elapsed = start.elapsed();
    let params = info.parameter_count();
    println!(
        "gemma-3-270m: version {} arch {:?} quant {} ctx {:?} blocks {:?} embd {:?} params {} ({}) \
         tensors {} keys {} data_offset {} file_len {} template {} license {:?} in {elapsed:?}",
        info.version,
        info.architecture(),
        info.quantization(),
        info.context_length(),
        info.block_count(),
        info.embedding_length(),
        params,
        format_parameter_count(params),
        info.tensors.len(),
        info.metadata.len(),
        info.data_offset,
        info.file_len,
        info.chat_template().is_some(),
        info.license(),
    );
    assert_eq!(info.architecture(), Some("gemma3"));
    assert_eq!(info.quantization(), "Q4_K_M");
    assert_eq!(info.context_length(), Some(32768));
    assert_eq!(info.block_count(), Some(18));
    assert_eq!(info.embedding_length(), Some(640));
    assert_eq!(params, 268_098_176);
    assert_eq!(format_parameter_count(params), "268.10M");
    assert_eq!(
        info.chat_template(),
        None,
        "a base model without a chat template"
    );
    assert_eq!(info.data_offset % info.alignment, 0);
    assert!(info.tensors.iter().all(|t| t.type_name().is_some()));
    let tokens = info
        .get("tokenizer.ggml.tokens")
        .and_then(MetaValue::as_array)
        .unwrap();
    assert_eq!(
        (tokens.element_type, tokens.values.is_none()),
        (ValueType::String, true)
    );
    let last = info
        .tensors
        .iter()
        .map(|t| info.data_offset + t.offset + t.size_bytes)
        .max()
        .unwrap();
    assert!(last <= info.file_len);
}
