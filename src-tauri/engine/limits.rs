//! The accepted range of each sampling and context parameter: one table that the API's option
//! parser and the desktop's chat command both check against, and that the desktop window reads
//! (command `parameter_limits`) to bound its fields, so the three never disagree.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ParamLimit {
    /// The Ollama option name (`temperature`, `num_ctx`, …).
    pub key: &'static str,
    /// What a person calls it, for messages.
    pub label: &'static str,
    pub min: f64,
    pub max: f64,
    pub integer: bool,
    /// What the lowest value means when it is special (`-1` max tokens = until done), else `None`.
    pub special_min: Option<&'static str>,
}

pub const PARAM_LIMITS: &[ParamLimit] = &[
    ParamLimit { key: "temperature", label: "temperature", min: 0.0, max: 5.0, integer: false, special_min: None },
    ParamLimit { key: "top_p", label: "top P", min: 0.0, max: 1.0, integer: false, special_min: None },
    ParamLimit { key: "min_p", label: "min P", min: 0.0, max: 1.0, integer: false, special_min: None },
    ParamLimit { key: "top_k", label: "top K", min: 0.0, max: 100_000.0, integer: true, special_min: None },
    ParamLimit { key: "repeat_penalty", label: "repeat penalty", min: 0.0, max: 5.0, integer: false, special_min: None },
    ParamLimit { key: "num_ctx", label: "context length", min: 256.0, max: (1u32 << 24) as f64, integer: true, special_min: None },
    // Ollama's -2 ("fill the context") is accepted like -1: the engine treats any negative as "until done".
    ParamLimit { key: "num_predict", label: "max tokens", min: -2.0, max: 1_000_000.0, integer: true, special_min: Some("-1 or -2 = until done") },
    ParamLimit { key: "seed", label: "seed", min: -1.0, max: u32::MAX as f64, integer: true, special_min: Some("-1 = random") },
];

pub fn limit(key: &str) -> Option<&'static ParamLimit> {
    PARAM_LIMITS.iter().find(|l| l.key == key)
}

/// `Err("option \"temperature\" must be between 0 and 5")` when `value` is outside `key`'s range
/// (or not a number); keys without a limit pass.
pub fn check(key: &str, value: f64) -> Result<(), String> {
    let Some(l) = limit(key) else { return Ok(()) };
    if value.is_nan() || value < l.min || value > l.max || (l.integer && value.fract() != 0.0) {
        let kind = if l.integer { "a whole number " } else { "" };
        let special = l.special_min.map(|s| format!(" ({s})")).unwrap_or_default();
        return Err(format!("option {key:?} ({}) must be {kind}between {} and {}{special}", l.label, l.min, l.max));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_inside_are_accepted_and_outside_refused_with_the_range() {
        assert!(check("temperature", 0.0).is_ok() && check("temperature", 5.0).is_ok());
        assert!(check("num_predict", -1.0).is_ok() && check("seed", -1.0).is_ok());
        assert!(check("unknown_option", 1e9).is_ok());
        assert_eq!(check("temperature", 5.5).unwrap_err(), "option \"temperature\" (temperature) must be between 0 and 5");
        assert!(check("num_ctx", 0.0).unwrap_err().contains("between 256 and 16777216"));
        assert!(check("num_predict", -3.0).unwrap_err().contains("-1 or -2 = until done"));
        assert!(check("top_k", 1.5).is_err() && check("top_p", f64::NAN).is_err());
    }
}
