//! Unit tests: valid files round-trip; every kind of broken or hostile file fails with the right
//! typed error, quickly, without panicking.

use std::io::Cursor;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::writer::GgufBuilder;
use super::*;

fn parse(bytes: &[u8]) -> Result<GgufInfo, GgufError> {
    read(Cursor::new(bytes), bytes.len() as u64)
}

fn put_u64_at(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A small model with every common kind of value. The last tensor's size is a multiple of the
/// alignment, so the file ends exactly where its data ends and every shorter prefix is invalid.
fn sample() -> GgufBuilder {
    GgufBuilder::new()
        .kv_str("general.architecture", "llama")
        .kv_u32("general.file_type", 7)
        .kv_str("general.license", "MIT")
        .kv_u32("llama.context_length", 4096)
        .kv_u64("llama.embedding_length", 8)
        .kv_i32("llama.block_count", 2)
        .kv_f32("llama.rope.freq_base", 10000.0)
        .kv_bool("llama.use_parallel_residual", true)
        .kv_str("tokenizer.chat_template", "{{ messages }}")
        .kv_array_str("tokenizer.ggml.tokens", &["<s>", "</s>", "a"])
        .kv_array_f32("tokenizer.ggml.scores", &[0.0, -1.0, -2.0])
        .tensor("token_embd.weight", &[32, 3], GGML_TYPE_Q8_0) // 3 blocks of 34 bytes, padded to 128
        .tensor("output_norm.weight", &[8], GGML_TYPE_F32) // 32 bytes
}

/// Runs `f` and fails if it took long: hostile counts must be rejected up front, not looped over.
fn quickly<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    out
}

#[test]
fn valid_file_round_trips() {
    let bytes = sample().build();
    let info = parse(&bytes).unwrap();
    assert_eq!(info.version, 3);
    assert_eq!(info.alignment, 32);
    assert_eq!(info.file_len, bytes.len() as u64);
    assert_eq!(info.data_offset % 32, 0);
    assert_eq!(info.data_offset + 128 + 32, info.file_len);
    assert_eq!(info.architecture(), Some("llama"));
    assert_eq!(info.file_type(), Some(7));
    assert_eq!(info.quantization(), "Q8_0");
    assert_eq!(info.context_length(), Some(4096));
    assert_eq!(info.embedding_length(), Some(8));
    assert_eq!(info.block_count(), Some(2));
    assert_eq!(info.chat_template(), Some("{{ messages }}"));
    assert_eq!(info.license(), Some("MIT"));
    assert_eq!(
        info.get("llama.rope.freq_base"),
        Some(&MetaValue::F32(10000.0))
    );
    assert_eq!(
        info.get("llama.use_parallel_residual"),
        Some(&MetaValue::Bool(true))
    );
    let tokens = info
        .get("tokenizer.ggml.tokens")
        .and_then(MetaValue::as_array)
        .unwrap();
    assert_eq!(tokens.element_type, ValueType::String);
    assert_eq!(tokens.len, 3);
    assert_eq!(
        tokens.values().unwrap()[1],
        MetaValue::String("</s>".into())
    );
    assert_eq!(info.metadata.len(), 11);

    assert_eq!(info.tensors.len(), 2);
    let (embd, norm) = (&info.tensors[0], &info.tensors[1]);
    assert_eq!(
        (embd.name.as_str(), embd.dims.as_slice()),
        ("token_embd.weight", &[32u64, 3][..])
    );
    assert_eq!(
        (embd.ggml_type, embd.offset, embd.size_bytes),
        (GGML_TYPE_Q8_0, 0, 102)
    );
    assert_eq!(
        (norm.ggml_type, norm.offset, norm.size_bytes),
        (GGML_TYPE_F32, 128, 32)
    );
    assert_eq!(norm.type_name(), Some("F32"));
    assert_eq!(info.parameter_count(), 96 + 8);
}

#[test]
fn reads_version_2_files() {
    let info = parse(&sample().version(2).build()).unwrap();
    assert_eq!(info.version, 2);
    assert_eq!(info.architecture(), Some("llama"));
}

#[test]
fn reads_a_file_without_tensors_or_padding() {
    let bytes = GgufBuilder::new()
        .kv_str("general.architecture", "llama")
        .build();
    let info = parse(&bytes).unwrap();
    assert!(info.tensors.is_empty());
    assert_eq!(info.parameter_count(), 0);
    assert_eq!(info.quantization(), "unknown");
}

#[test]
fn read_file_reads_from_disk_and_names_missing_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    sample().write_to(&path).unwrap();
    assert_eq!(read_file(&path).unwrap().architecture(), Some("llama"));

    let missing = dir.path().join("missing.gguf");
    let err = read_file(&missing).unwrap_err();
    assert!(matches!(err, GgufError::Io(_)), "{err:?}");
    assert!(err.to_string().contains("missing.gguf"), "{err}");
}

#[test]
fn reads_from_the_start_whatever_the_reader_position() {
    let bytes = sample().build();
    let mut cursor = Cursor::new(&bytes);
    cursor.set_position(50);
    assert!(read(cursor, bytes.len() as u64).is_ok());
}

#[test]
fn is_gguf_magic_checks_the_first_four_bytes() {
    assert!(is_gguf_magic(b"GGUF\x03\0\0\0"));
    assert!(is_gguf_magic(b"GGUF"));
    assert!(!is_gguf_magic(b"GGU"));
    assert!(!is_gguf_magic(b"GGML...."));
    assert!(!is_gguf_magic(b""));
}

#[test]
fn rejects_bad_magic() {
    let mut bytes = sample().build();
    bytes[..4].copy_from_slice(b"PK\x03\x04");
    let err = parse(&bytes).unwrap_err();
    assert!(
        matches!(err, GgufError::BadMagic { found } if &found == b"PK\x03\x04"),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
}

#[test]
fn rejects_version_1() {
    let err = parse(&sample().version(1).build()).unwrap_err();
    assert!(matches!(err, GgufError::UnsupportedVersion(1)), "{err:?}");
}

#[test]
fn rejects_version_99() {
    let err = parse(&sample().version(99).build()).unwrap_err();
    assert!(matches!(err, GgufError::UnsupportedVersion(99)), "{err:?}");
    assert!(err.to_string().contains("only versions 2 and 3"), "{err}");
}

#[test]
fn rejects_big_endian_files() {
    let err = parse(&sample().version(3u32.swap_bytes()).build()).unwrap_err();
    assert!(
        matches!(err, GgufError::BigEndian { version: 3 }),
        "{err:?}"
    );
}

#[test]
fn rejects_every_truncation_of_a_small_file() {
    let bytes = sample().build();
    for n in 0..bytes.len() {
        match parse(&bytes[..n]) {
            Err(GgufError::Truncated { .. } | GgufError::TensorOutOfBounds { .. }) => {}
            other => panic!("prefix of {n} bytes: {other:?}"),
        }
    }
}

#[test]
fn a_stream_shorter_than_the_stated_length_is_truncated() {
    let bytes = sample().build();
    let cut = &bytes[..bytes.len() - 1];
    let err = read(Cursor::new(cut), bytes.len() as u64).unwrap_err();
    assert!(
        matches!(err, GgufError::TensorOutOfBounds { .. }),
        "{err:?}"
    );
    let cut = &bytes[..40];
    let err = read(Cursor::new(cut), bytes.len() as u64).unwrap_err();
    assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");
}

#[test]
fn rejects_tensor_count_2_pow_60_quickly() {
    let mut bytes = sample().build();
    put_u64_at(&mut bytes, 8, 1 << 60);
    let err = quickly(|| parse(&bytes)).unwrap_err();
    assert!(
        matches!(err, GgufError::TooLarge { value, .. } if value == 1 << 60),
        "{err:?}"
    );
}

#[test]
fn rejects_tensor_count_past_end_of_file_quickly() {
    let mut bytes = sample().build();
    put_u64_at(&mut bytes, 8, MAX_TENSOR_COUNT);
    let err = quickly(|| parse(&bytes)).unwrap_err();
    assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");
}

#[test]
fn rejects_kv_count_2_pow_60_quickly() {
    let mut bytes = sample().build();
    put_u64_at(&mut bytes, 16, 1 << 60);
    let err = quickly(|| parse(&bytes)).unwrap_err();
    assert!(
        matches!(err, GgufError::TooLarge { value, .. } if value == 1 << 60),
        "{err:?}"
    );
}

#[test]
fn rejects_array_length_2_pow_62_quickly() {
    // Layout: header (24), key length (8) + "a", value type (4), element type (4), array length.
    for bytes in [
        GgufBuilder::new().kv_array_str("a", &["x", "y"]).build(),
        GgufBuilder::new().kv_array_u32("a", &[1, 2]).build(),
    ] {
        let mut bytes = bytes;
        put_u64_at(&mut bytes, 24 + 8 + 1 + 4 + 4, 1 << 62);
        let err = quickly(|| parse(&bytes)).unwrap_err();
        assert!(
            matches!(err, GgufError::TooLarge { value, .. } if value == 1 << 62),
            "{err:?}"
        );
    }
}

#[test]
fn rejects_array_length_past_end_of_file_quickly() {
    let mut bytes = GgufBuilder::new().kv_array_str("a", &["x", "y"]).build();
    put_u64_at(&mut bytes, 24 + 8 + 1 + 4 + 4, MAX_ARRAY_LEN);
    let err = quickly(|| parse(&bytes)).unwrap_err();
    assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");
}

#[test]
fn rejects_string_length_2_pow_63_quickly() {
    // The first key's length, then a string value's length (after key "a" and the value type).
    let mut bytes = GgufBuilder::new().kv_str("a", "b").build();
    put_u64_at(&mut bytes, 24, 1 << 63);
    let err = quickly(|| parse(&bytes)).unwrap_err();
    assert!(
        matches!(err, GgufError::TooLarge { value, limit: MAX_NAME_LEN, .. } if value == 1 << 63),
        "{err:?}"
    );

    let mut bytes = GgufBuilder::new().kv_str("a", "b").build();
    put_u64_at(&mut bytes, 24 + 8 + 1 + 4, 1 << 63);
    let err = quickly(|| parse(&bytes)).unwrap_err();
    assert!(
        matches!(err, GgufError::TooLarge { value, limit: MAX_STRING_LEN, .. } if value == 1 << 63),
        "{err:?}"
    );
}

#[test]
fn rejects_string_length_past_end_of_file() {
    let mut bytes = GgufBuilder::new().kv_str("a", "b").kv_str("c", "d").build();
    put_u64_at(&mut bytes, 24 + 8 + 1 + 4, 1000);
    let err = parse(&bytes).unwrap_err();
    assert!(
        matches!(err, GgufError::Truncated { offset: 45, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("truncated GGUF: metadata key #0 ('a') value (1000 bytes) at byte 45"),
        "{msg}"
    );
    assert!(msg.contains("runs past the end of the file"), "{msg}");
}

#[test]
fn rejects_unknown_value_type() {
    let err = parse(
        &GgufBuilder::new()
            .kv_u32("ok", 1)
            .kv_raw("bad", 13, &[0; 8])
            .build(),
    )
    .unwrap_err();
    assert!(
        matches!(err, GgufError::UnknownValueType { ty: 13, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("metadata key #1 ('bad')"), "{err}");
}

#[test]
fn rejects_unknown_array_element_type() {
    let mut payload = 99u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&0u64.to_le_bytes());
    let err = parse(&GgufBuilder::new().kv_raw("bad", 9, &payload).build()).unwrap_err();
    assert!(
        matches!(err, GgufError::UnknownValueType { ty: 99, .. }),
        "{err:?}"
    );
}

#[test]
fn rejects_invalid_utf8_in_keys() {
    let mut bytes = GgufBuilder::new().kv_u32("ab", 1).build();
    bytes[24 + 8] = 0xFF;
    let err = parse(&bytes).unwrap_err();
    assert!(
        matches!(err, GgufError::InvalidUtf8 { offset: 24, .. }),
        "{err:?}"
    );
}

#[test]
fn replaces_invalid_utf8_in_string_values() {
    let mut bytes = GgufBuilder::new().kv_str("a", "xy").build();
    let at = bytes.len() - 1;
    bytes[at] = 0xFF;
    assert_eq!(parse(&bytes).unwrap().get_str("a"), Some("x\u{FFFD}"));
}

#[test]
fn rejects_duplicate_keys() {
    let err = parse(&GgufBuilder::new().kv_u32("a", 1).kv_u32("a", 2).build()).unwrap_err();
    assert!(
        matches!(err, GgufError::DuplicateKey(ref k) if k == "a"),
        "{err:?}"
    );
}

#[test]
fn rejects_unknown_ggml_type() {
    // 4 and 5 (Q4_2/Q4_3), 31-33 (Q4_0_4_4…) and 36-38 (IQ4_NL_4_4…) were removed from ggml.
    for ty in [4, 5, 31, 33, 36, 38, 43, 1000, u32::MAX] {
        let err = parse(&GgufBuilder::new().tensor("t", &[32], ty).build()).unwrap_err();
        assert!(
            matches!(err, GgufError::UnknownTensorType { ty: t, ref tensor } if t == ty && tensor == "t"),
            "{err:?}"
        );
    }
}

#[test]
fn rejects_tensor_past_end_of_file() {
    let mut bytes = sample().build();
    bytes.pop();
    let err = parse(&bytes).unwrap_err();
    assert!(
        matches!(err, GgufError::TensorOutOfBounds { ref tensor, size: 32, .. } if tensor == "output_norm.weight"),
        "{err:?}"
    );

    // A table claiming 4 TiB of data; the builder writes no data for it.
    let err = parse(
        &GgufBuilder::new()
            .tensor("big", &[1 << 40], GGML_TYPE_F32)
            .build(),
    )
    .unwrap_err();
    assert!(
        matches!(err, GgufError::TensorOutOfBounds { size, .. } if size == 4 << 40),
        "{err:?}"
    );
}

#[test]
fn rejects_misaligned_tensor_offset() {
    let bytes = GgufBuilder::new()
        .tensor_at("t", &[8], GGML_TYPE_F32, 8)
        .build();
    let err = parse(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::MisalignedTensor {
                offset: 8,
                alignment: 32,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn rejects_overlapping_tensors_and_gaps() {
    let overlap = GgufBuilder::new()
        .tensor("a", &[8], GGML_TYPE_F32)
        .tensor_at("b", &[8], GGML_TYPE_F32, 0)
        .build();
    let err = parse(&overlap).unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::TensorOffsetMismatch {
                offset: 0,
                expected: 32,
                ..
            }
        ),
        "{err:?}"
    );

    let gap = GgufBuilder::new()
        .tensor("a", &[8], GGML_TYPE_F32)
        .tensor_at("b", &[8], GGML_TYPE_F32, 64)
        .build();
    let err = parse(&gap).unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::TensorOffsetMismatch {
                offset: 64,
                expected: 32,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn rejects_dims_product_overflow() {
    let cases: [&[u64]; 4] = [
        &[1 << 32, 1 << 32, 2], // element count overflows u64
        &[1 << 62, 2],          // fits u64 but not ggml's int64
        &[u64::MAX],            // a single dimension beyond int64
        &[1 << 62],             // elements fit, F32 bytes (2^64) do not
    ];
    for dims in cases {
        let err = quickly(|| parse(&GgufBuilder::new().tensor("t", dims, GGML_TYPE_F32).build()))
            .unwrap_err();
        assert!(
            matches!(err, GgufError::BadTensorShape { .. }),
            "{dims:?}: {err:?}"
        );
    }
}

#[test]
fn rejects_more_than_four_dims() {
    let err = parse(
        &GgufBuilder::new()
            .tensor("t", &[1, 1, 1, 1, 1], GGML_TYPE_F32)
            .build(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::TooLarge {
                value: 5,
                limit: 4,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn rejects_rows_that_are_not_whole_blocks() {
    let err = parse(
        &GgufBuilder::new()
            .tensor("t", &[16, 2], GGML_TYPE_Q4_0)
            .build(),
    )
    .unwrap_err();
    assert!(matches!(err, GgufError::BadTensorShape { .. }), "{err:?}");
    assert!(err.to_string().contains("Q4_0 blocks of 32"), "{err}");
}

#[test]
fn accepts_zero_dims_and_scalars() {
    let info = parse(
        &GgufBuilder::new()
            .tensor("scalar", &[], GGML_TYPE_F32)
            .tensor("empty", &[0, 4], GGML_TYPE_Q4_K)
            .build(),
    )
    .unwrap();
    assert_eq!(info.tensors[0].size_bytes, 4);
    assert_eq!(info.tensors[1].size_bytes, 0);
    assert_eq!(info.parameter_count(), 1);
}

#[test]
fn rejects_duplicate_tensor_names() {
    let bytes = GgufBuilder::new()
        .tensor("t", &[8], GGML_TYPE_F32)
        .tensor("t", &[8], GGML_TYPE_F32)
        .build();
    let err = parse(&bytes).unwrap_err();
    assert!(
        matches!(err, GgufError::DuplicateTensor(ref n) if n == "t"),
        "{err:?}"
    );
}

#[test]
fn rejects_tensor_names_llama_cpp_cannot_hold() {
    let long = "x".repeat(64);
    let err = parse(
        &GgufBuilder::new()
            .tensor(&long, &[8], GGML_TYPE_F32)
            .build(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::TooLarge {
                value: 64,
                limit: 63,
                ..
            }
        ),
        "{err:?}"
    );
    let ok = "x".repeat(63);
    assert!(parse(&GgufBuilder::new().tensor(&ok, &[8], GGML_TYPE_F32).build()).is_ok());
}

#[test]
fn honours_a_custom_alignment() {
    let info = parse(&sample().alignment(64).build()).unwrap();
    assert_eq!(info.alignment, 64);
    assert_eq!(info.data_offset % 64, 0);
    assert_eq!(info.tensors[1].offset, 128);
    let info = parse(&sample().alignment(1).build()).unwrap();
    assert_eq!(info.tensors[1].offset, 102);
}

#[test]
fn rejects_bad_alignment() {
    for builder in [
        sample().alignment(0),
        sample().alignment(48),
        sample().alignment(1 << 30),
        sample().kv_u64("general.alignment", 32), // llama.cpp requires a u32
        sample().kv_str("general.alignment", "32"),
    ] {
        let err = parse(&builder.build()).unwrap_err();
        assert!(matches!(err, GgufError::InvalidAlignment { .. }), "{err:?}");
    }
}

/// A chain of `depth` arrays, each holding the next; the innermost is an empty u8 array.
fn nested_payload(depth: usize) -> Vec<u8> {
    let mut payload = Vec::new();
    for level in 0..depth {
        let innermost = level + 1 == depth;
        payload.extend_from_slice(&(if innermost { 0u32 } else { 9 }).to_le_bytes());
        payload.extend_from_slice(&(if innermost { 0u64 } else { 1 }).to_le_bytes());
    }
    payload
}

#[test]
fn reads_nested_arrays() {
    let inner = |v: &[u8]| {
        let values: Vec<MetaValue> = v.iter().map(|&b| MetaValue::U8(b)).collect();
        MetaValue::Array(MetaArray {
            element_type: ValueType::U8,
            len: values.len() as u64,
            values: Some(values),
        })
    };
    let nested = vec![inner(&[1, 2]), inner(&[]), inner(&[3])];
    let info = parse(
        &GgufBuilder::new()
            .kv_array("n", ValueType::Array, nested.clone())
            .build(),
    )
    .unwrap();
    let arr = info.get("n").and_then(MetaValue::as_array).unwrap();
    assert_eq!(arr.values(), Some(&nested[..]));

    let deepest_allowed =
        GgufBuilder::new().kv_raw("deep", 9, &nested_payload(MAX_ARRAY_DEPTH as usize));
    assert!(parse(&deepest_allowed.build()).is_ok());
}

#[test]
fn rejects_too_deeply_nested_arrays() {
    for depth in [MAX_ARRAY_DEPTH as usize + 1, 100_000] {
        let bytes = GgufBuilder::new()
            .kv_raw("deep", 9, &nested_payload(depth))
            .build();
        let err = quickly(|| parse(&bytes)).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::TooLarge {
                    limit: MAX_ARRAY_DEPTH,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn keeps_small_arrays_and_summarises_large_ones() {
    let tokens: Vec<String> = (0..5000).map(|i| format!("tok{i}")).collect();
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let kept: Vec<u32> = (0..KEEP_ARRAY_MAX as u32).collect();
    let bytes = GgufBuilder::new()
        .kv_array_str("tokenizer.ggml.tokens", &tokens)
        .kv_array_u32("big", &vec![7; 2000])
        .kv_array_u32("kept", &kept)
        .kv_str("after", "still read")
        .build();
    let info = parse(&bytes).unwrap();
    let summary = |k: &str| info.get(k).and_then(MetaValue::as_array).unwrap();
    assert_eq!(summary("tokenizer.ggml.tokens").len, 5000);
    assert_eq!(
        summary("tokenizer.ggml.tokens").element_type,
        ValueType::String
    );
    assert_eq!(summary("tokenizer.ggml.tokens").values, None);
    assert_eq!(summary("big").values, None);
    assert_eq!(
        summary("kept").values().map(<[_]>::len),
        Some(KEEP_ARRAY_MAX as usize)
    );
    assert_eq!(info.get_str("after"), Some("still read"));
}

#[test]
fn caps_the_total_number_of_kept_array_elements() {
    let n = (KEEP_TOTAL_MAX / KEEP_ARRAY_MAX) as usize + 2;
    let mut builder = GgufBuilder::new();
    for i in 0..n {
        builder = builder.kv_array(
            "a".repeat(i + 1).as_str(),
            ValueType::U8,
            vec![MetaValue::U8(1); 1024],
        );
    }
    let info = parse(&builder.build()).unwrap();
    let kept: u64 = info
        .metadata
        .values()
        .filter_map(MetaValue::as_array)
        .filter_map(|a| a.values().map(|v| v.len() as u64))
        .sum();
    assert_eq!(kept, KEEP_TOTAL_MAX);
    assert_eq!(info.metadata.len(), n);
}

#[test]
fn get_u64_accepts_any_non_negative_integer_type() {
    let info = parse(
        &GgufBuilder::new()
            .kv_u8("u8", 8)
            .kv_i16("i16", 16)
            .kv_i32("i32", 32)
            .kv_u64("u64", u64::MAX)
            .kv_i64("neg", -1)
            .kv_f32("f32", 1.0)
            .kv_str("s", "5")
            .build(),
    )
    .unwrap();
    assert_eq!(info.get_u64("u8"), Some(8));
    assert_eq!(info.get_u64("i16"), Some(16));
    assert_eq!(info.get_u64("i32"), Some(32));
    assert_eq!(info.get_u64("u64"), Some(u64::MAX));
    assert_eq!(info.get_u64("neg"), None);
    assert_eq!(info.get_u64("f32"), None);
    assert_eq!(info.get_u64("s"), None);
    assert_eq!(info.get_u64("missing"), None);
    assert_eq!(info.get_str("s"), Some("5"));
    assert_eq!(info.get_str("u8"), None);
}

#[test]
fn quantization_names_the_file_type_else_the_dominant_tensor_type() {
    let with = |ft: Option<u32>| {
        let mut b = GgufBuilder::new();
        if let Some(ft) = ft {
            b = b.kv_u32("general.file_type", ft);
        }
        let b = b
            .tensor("w", &[256, 4], GGML_TYPE_Q4_K)
            .tensor("a", &[8], GGML_TYPE_F32)
            .tensor("b", &[8], GGML_TYPE_F32);
        parse(&b.build()).unwrap().quantization()
    };
    assert_eq!(with(Some(15)), "Q4_K_M");
    assert_eq!(with(Some(1)), "F16");
    assert_eq!(with(Some(0)), "F32");
    assert_eq!(with(None), "Q4_K");
    assert_eq!(with(Some(4000)), "Q4_K");
}

#[test]
fn format_parameter_count_matches_ollama() {
    assert_eq!(format_parameter_count(268_098_176), "268.10M");
    assert_eq!(format_parameter_count(8_030_261_248), "8.0B");
    assert_eq!(format_parameter_count(7_000_000_000), "7B");
    assert_eq!(format_parameter_count(1_000_000), "1M");
    assert_eq!(format_parameter_count(1_234), "1K");
    assert_eq!(format_parameter_count(999), "999");
    assert_eq!(format_parameter_count(0), "0");
    assert_eq!(format_parameter_count(u64::MAX), "18446744073.7B");
}

#[test]
fn ggml_type_table_matches_ggml() {
    let expect = [
        (GGML_TYPE_F32, "F32", 1, 4),
        (GGML_TYPE_F16, "F16", 1, 2),
        (GGML_TYPE_Q4_0, "Q4_0", 32, 18),
        (GGML_TYPE_Q8_0, "Q8_0", 32, 34),
        (GGML_TYPE_Q4_K, "Q4_K", 256, 144),
        (GGML_TYPE_Q6_K, "Q6_K", 256, 210),
        (GGML_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66),
        (GGML_TYPE_IQ4_XS, "IQ4_XS", 256, 136),
        (GGML_TYPE_BF16, "BF16", 1, 2),
        (GGML_TYPE_TQ1_0, "TQ1_0", 256, 54),
        (GGML_TYPE_MXFP4, "MXFP4", 32, 17),
    ];
    for (ty, name, block, size) in expect {
        assert_eq!(ggml_type_name(ty), Some(name));
        assert_eq!(ggml_block_layout(ty), Some((block, size)), "{name}");
    }
    for ty in 0..64 {
        assert_eq!(
            ggml_type_name(ty).is_some(),
            ggml_block_layout(ty).is_some(),
            "{ty}"
        );
    }
    let known = (0..64).filter(|&t| ggml_type_name(t).is_some()).count();
    assert_eq!(known, 43 - 8, "ggml has 43 ids of which 8 were removed");
}

#[test]
fn metadata_serialises_untagged() {
    let info = parse(&sample().build()).unwrap();
    let json = serde_json::to_value(&info.metadata).unwrap();
    assert_eq!(json["general.architecture"], "llama");
    assert_eq!(json["llama.context_length"], 4096);
    assert_eq!(json["tokenizer.ggml.tokens"]["values"][2], "a");
    assert_eq!(json["tokenizer.ggml.tokens"]["element_type"], "string");
}

#[test]
fn every_single_byte_corruption_is_handled() {
    let base = sample().build();
    for i in 0..base.len() {
        for v in [
            0x00,
            0xFF,
            0x80,
            0x7F,
            base[i].wrapping_add(1),
            base[i].wrapping_sub(1),
        ] {
            let mut bytes = base.clone();
            bytes[i] = v;
            let _ = parse(&bytes);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn setting_any_single_byte_never_panics(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = sample().build();
        let i = index.index(bytes.len());
        bytes[i] = byte;
        let _ = parse(&bytes);
    }

    #[test]
    fn flipping_any_bit_never_panics(index in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = sample().build();
        let i = index.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let _ = parse(&bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"GGUF\x03\0\0\0".to_vec();
        bytes.extend_from_slice(&body);
        prop_assert!(parse(&bytes).is_err() || bytes.len() >= 24);
    }
}

mod split_models {
    use std::path::{Path, PathBuf};

    use super::super::split::{self, check_parts, part_name, write_split, Merge};
    use super::*;

    /// A GGUF file on disk whose tensors hold distinct bytes (so a misplaced byte shows).
    fn patterned(dir: &Path) -> (PathBuf, GgufInfo) {
        let mut bytes = sample()
            .kv_array_u32("tokenizer.ggml.token_type", &[1; 2000])
            .tensor("extra.a", &[96], GGML_TYPE_F32)
            .tensor("extra.b", &[40], GGML_TYPE_F32)
            .build();
        let info = parse(&bytes).unwrap();
        for t in &info.tensors {
            let start = (info.data_offset + t.offset) as usize;
            for (i, b) in bytes[start..start + t.size_bytes as usize].iter_mut().enumerate() {
                *b = (i % 251) as u8 ^ t.name.len() as u8;
            }
        }
        let path = dir.join("whole.gguf");
        std::fs::write(&path, &bytes).unwrap();
        (path.clone(), read_file(&path).unwrap())
    }

    fn tensor_bytes(path: &Path, info: &GgufInfo) -> Vec<(String, Vec<u8>)> {
        let bytes = std::fs::read(path).unwrap();
        info.tensors.iter().map(|t| {
            let start = (info.data_offset + t.offset) as usize;
            (t.name.clone(), bytes[start..start + t.size_bytes as usize].to_vec())
        }).collect()
    }

    fn infos(paths: &[PathBuf]) -> Vec<(PathBuf, GgufInfo)> {
        paths.iter().map(|p| (p.clone(), read_file(p).unwrap())).collect()
    }

    #[test]
    fn part_names_are_read_as_llama_cpp_writes_them() {
        assert_eq!(part_name("Qwen2.5-7B-Q4_K_M-00002-of-00003.gguf"), Some(("Qwen2.5-7B-Q4_K_M", 2, 3)));
        assert_eq!(part_name("m-00001-of-00010.GGUF"), Some(("m", 1, 10)));
        assert_eq!(split::part_file_name("m", 3, 12), "m-00003-of-00012.gguf");
        for not_a_part in ["m.gguf", "m-00004-of-00003.gguf", "m-00000-of-00003.gguf", "m-1-of-3.gguf", "-00001-of-00002.gguf", "m-00001-of-00002.bin", "é"] {
            assert_eq!(part_name(not_a_part), None, "{not_a_part}");
        }
    }

    #[test]
    fn a_split_merges_back_to_the_same_tensors_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let (whole, info) = patterned(dir.path());
        let parts = write_split(&whole, &info, 3, dir.path(), "model").unwrap();
        assert_eq!(parts.len(), 3);
        let parts = infos(&parts);
        assert_eq!(split::split_meta(&parts[2].1), Some(split::SplitMeta { no: 2, count: 3, tensors: info.tensors.len() as u64 }));
        check_parts(&parts).unwrap();

        let merge = Merge::plan(&parts).unwrap();
        let mut merged = Vec::new();
        std::io::Read::read_to_end(&mut merge.reader(), &mut merged).unwrap();
        assert_eq!(merged.len() as u64, merge.len());
        let merged_path = dir.path().join("merged.gguf");
        std::fs::write(&merged_path, &merged).unwrap();
        let back = read_file(&merged_path).unwrap();
        assert!(back.get(split::KEY_COUNT).is_none() && back.get(split::KEY_NO).is_none());
        assert_eq!(back.metadata, info.metadata);
        assert!(tensor_bytes(&merged_path, &back) == tensor_bytes(&whole, &info), "the merged tensors differ");
        // Merging the parts of a file gives that file back, byte for byte.
        assert!(merged == std::fs::read(&whole).unwrap(), "the merged file differs from the one split");
    }

    #[test]
    fn parts_that_do_not_belong_together_are_refused_naming_the_part() {
        let dir = tempfile::tempdir().unwrap();
        let (whole, info) = patterned(dir.path());
        let parts = infos(&write_split(&whole, &info, 3, dir.path(), "a").unwrap());
        let other = infos(&write_split(&whole, &info, 2, dir.path(), "b").unwrap());

        let missing = check_parts(&[parts[0].clone(), parts[2].clone()]).unwrap_err();
        assert!(missing.contains("a-00001-of-00003.gguf says the model has 3 parts, but 2 were found"), "{missing}");
        let swapped = check_parts(&[parts[0].clone(), parts[2].clone(), parts[1].clone()]).unwrap_err();
        assert!(swapped.contains("a-00003-of-00003.gguf is named as part 2 but its metadata says part 3"), "{swapped}");
        let foreign = check_parts(&[parts[0].clone(), other[1].clone(), parts[2].clone()]).unwrap_err();
        assert!(foreign.contains("b-00002-of-00002.gguf says the model has 2 parts"), "{foreign}");
        let mut duplicated = parts[1].1.clone();
        duplicated.metadata.insert(split::KEY_NO.into(), MetaValue::U16(2));
        let dup = check_parts(&[parts[0].clone(), parts[1].clone(), (parts[1].0.clone(), duplicated)]).unwrap_err();
        assert!(dup.contains("a-00001-of-00003.gguf says the model has 4 tensors, but its 3 parts hold 3"), "{dup}");
        let whole_as_part = check_parts(&[(whole.clone(), info.clone()), parts[1].clone(), parts[2].clone()]).unwrap_err();
        assert!(whole_as_part.contains("has no split metadata"), "{whole_as_part}");
    }

    #[test]
    fn a_part_cut_short_after_the_check_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let (whole, info) = patterned(dir.path());
        let parts = infos(&write_split(&whole, &info, 2, dir.path(), "m").unwrap());
        let merge = Merge::plan(&parts).unwrap();
        let last = &parts[1].0;
        let len = std::fs::metadata(last).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(last).unwrap().set_len(len - 100).unwrap();
        let err = std::io::Read::read_to_end(&mut merge.reader(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("changed after it was checked"), "{err}");
    }
}
