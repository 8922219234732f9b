//! Output formats users already know from `ollama list`.

use std::time::{Duration, SystemTime};

/// Decimal sizes as Ollama prints them: `253 MB`, `1.5 GB`, `815 B` (the app-wide byte format).
pub fn human_bytes(b: u64) -> String {
    crate::hardware::human(b)
}

/// Relative times as Ollama prints them (`About a minute ago`, `2 weeks ago`).
pub fn human_since(t: SystemTime, now: SystemTime) -> String {
    match now.duration_since(t) {
        Ok(d) => format!("{} ago", human_duration(d)),
        Err(_) => "Less than a second ago".into(),
    }
}

fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let minutes = secs / 60;
    let hours = ((d.as_secs_f64() / 3600.0) + 0.5) as u64;
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

/// Left-aligned columns separated by at least three spaces, like Ollama's tables.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 4));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_ollama() {
        assert_eq!(human_bytes(253_000_000), "253 MB");
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
        assert_eq!(human_bytes(2_000_000_000), "2 GB");
        assert_eq!(human_bytes(815), "815 B");
        assert_eq!(human_bytes(4_920_000_000), "4.9 GB");
    }

    #[test]
    fn times_match_ollama() {
        let now = SystemTime::now();
        let ago = |s: u64| human_since(now - Duration::from_secs(s), now);
        assert_eq!(ago(0), "Less than a second ago");
        assert_eq!(ago(75), "About a minute ago");
        assert_eq!(ago(5 * 60), "5 minutes ago");
        assert_eq!(ago(3 * 86400), "3 days ago");
        assert_eq!(ago(15 * 86400), "2 weeks ago");
    }
}
