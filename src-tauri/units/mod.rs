//! Units and formats every layer shares: sizes people type (`4G`, `100MB`, `1.5M`) and the RFC 3339
//! time stamps that files and API replies carry. Pure functions; uses no other module of Airlock,
//! so the bundle writer, the hardware probe, the API and the command line can all share them.

/// Now, as RFC 3339 in UTC (`2026-12-05T07:04:34.123Z`).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Parses a size: plain bytes, or a number with `K`/`M`/`G`/`T` (binary: 1024-based, `KiB`… also
/// accepted) or `KB`/`MB`/`GB`/`TB` (decimal).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("invalid size {s:?}: expected e.g. 100M, 4G or a number of bytes"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KIB" => 1 << 10,
        "M" | "MIB" => 1 << 20,
        "G" | "GIB" => 1 << 30,
        "T" | "TIB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => return Err(format!("invalid size {s:?}: unknown unit {other:?} (use K, M, G, T, or KB, MB, GB, TB)")),
    };
    Ok((value * mult as f64).floor() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("100M").unwrap(), 100 << 20);
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("1.5M").unwrap(), 3 << 19);
        assert_eq!(parse_size("5000").unwrap(), 5000);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert_eq!(parse_size("3GiB").unwrap(), 3 << 30);
        assert!(parse_size("4X").is_err());
        assert!(parse_size("").is_err());
    }
}

