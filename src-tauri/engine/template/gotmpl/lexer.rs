//! Splits a Go template into text and actions (`{{ … }}`), applying `{{-`/`-}}` trim markers
//! and dropping `{{/* comments */}}`, then tokenizes each action.

use super::GoError;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    /// A bare word: a keyword (`if`, `range`, …), `true`/`false`/`nil` or a function name.
    Ident(String),
    /// `.A.B` (a field chain on dot).
    Field(Vec<String>),
    /// `.` itself.
    Dot,
    /// `$name` (or `$`) plus an optional field chain.
    Var(String, Vec<String>),
    Str(String),
    Int(i64),
    Float(f64),
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub tok: Tok,
    /// Whether whitespace came right before it (a field right after `)` chains, `) .F` does not).
    pub spaced: bool,
}

#[derive(Debug)]
pub(super) enum Piece {
    Text(String),
    Action { tokens: Vec<Token>, line: usize },
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

pub(super) fn lex(src: &str) -> Result<Vec<Piece>, GoError> {
    let bytes = src.as_bytes();
    let mut pieces = Vec::new();
    let mut pos = 0;
    let mut trim_next_text = false;
    // Line numbers are counted incrementally: rescanning from the start would be quadratic.
    let (mut line, mut counted_to) = (1, 0);
    loop {
        let next = src[pos..].find("{{").map(|i| pos + i);
        let mut text = &src[pos..next.unwrap_or(src.len())];
        if trim_next_text {
            text = text.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
        }
        let Some(open) = next else {
            push_text(&mut pieces, text);
            break;
        };
        line += bytes[counted_to..open]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        counted_to = open;
        let mut p = open + 2;
        // `{{- ` trims the text before; the dash must be followed by a space.
        if bytes.get(p) == Some(&b'-') && bytes.get(p + 1).is_some_and(|&c| is_space(c)) {
            text = text.trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8));
            p += 1;
        }
        push_text(&mut pieces, text);
        let (tokens, end, trim_after) = lex_action(src, p, line)?;
        if !tokens.is_empty() {
            pieces.push(Piece::Action { tokens, line });
        }
        trim_next_text = trim_after;
        pos = end;
    }
    Ok(pieces)
}

fn push_text(pieces: &mut Vec<Piece>, text: &str) {
    if !text.is_empty() {
        pieces.push(Piece::Text(text.to_string()));
    }
}

/// Tokenizes one action starting after `{{`/`{{-`; returns the tokens, the position after `}}`
/// and whether a `-}}` trims the following text. A comment yields no tokens.
fn lex_action(src: &str, start: usize, line: usize) -> Result<(Vec<Token>, usize, bool), GoError> {
    let b = src.as_bytes();
    let mut p = start;
    let mut tokens = Vec::new();
    let err = |msg: String| GoError::syntax(line, msg);
    loop {
        let space_start = p;
        while p < b.len() && is_space(b[p]) {
            p += 1;
        }
        let spaced = p > space_start;
        if p >= b.len() {
            return Err(err("unclosed action".into()));
        }
        if b[p..].starts_with(b"-}}") && (spaced || p == start) {
            return Ok((tokens, p + 3, true));
        }
        if b[p..].starts_with(b"}}") {
            return Ok((tokens, p + 2, false));
        }
        if b[p..].starts_with(b"/*") {
            if !tokens.is_empty() {
                return Err(err("comment must be the whole action".into()));
            }
            let close = src[p + 2..]
                .find("*/")
                .ok_or_else(|| err("unclosed comment".into()))?;
            p = p + 2 + close + 2;
            continue;
        }
        let (tok, next) = lex_token(src, p).map_err(err)?;
        tokens.push(Token { tok, spaced });
        p = next;
    }
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn lex_token(src: &str, p: usize) -> Result<(Tok, usize), String> {
    let b = src.as_bytes();
    let c = b[p];
    match c {
        b'(' => Ok((Tok::LParen, p + 1)),
        b')' => Ok((Tok::RParen, p + 1)),
        b'|' => Ok((Tok::Pipe, p + 1)),
        b',' => Ok((Tok::Comma, p + 1)),
        b'=' => Ok((Tok::Assign, p + 1)),
        b':' if b.get(p + 1) == Some(&b'=') => Ok((Tok::Declare, p + 2)),
        b'"' => lex_quoted(src, p),
        b'`' => {
            let close = src[p + 1..]
                .find('`')
                .ok_or("unterminated raw quoted string")?;
            Ok((
                Tok::Str(src[p + 1..p + 1 + close].to_string()),
                p + close + 2,
            ))
        }
        b'\'' => lex_char(src, p),
        b'.' if b.get(p + 1).is_some_and(|c| c.is_ascii_digit()) => lex_number(src, p),
        b'.' => {
            let (fields, end) = lex_fields(src, p);
            if fields.is_empty() {
                Ok((Tok::Dot, p + 1))
            } else {
                Ok((Tok::Field(fields), end))
            }
        }
        b'$' => {
            let mut end = p + 1;
            while end < b.len() && is_ident_char(b[end]) {
                end += 1;
            }
            let name = src[p..end].to_string();
            let (fields, end) = lex_fields(src, end);
            Ok((Tok::Var(name, fields), end))
        }
        b'+' | b'-' | b'0'..=b'9' => lex_number(src, p),
        c if is_ident_char(c) => {
            let mut end = p;
            while end < b.len() && is_ident_char(b[end]) {
                end += 1;
            }
            Ok((Tok::Ident(src[p..end].to_string()), end))
        }
        _ => {
            let ch = src[p..].chars().next().unwrap_or('?');
            Err(format!("unexpected {ch:?} in action"))
        }
    }
}

/// Reads `.A.B…` starting at a `.`; stops before a `.` not followed by an identifier.
fn lex_fields(src: &str, mut p: usize) -> (Vec<String>, usize) {
    let b = src.as_bytes();
    let mut fields = Vec::new();
    while p < b.len()
        && b[p] == b'.'
        && b.get(p + 1)
            .is_some_and(|&c| is_ident_char(c) && !c.is_ascii_digit())
    {
        let mut end = p + 1;
        while end < b.len() && is_ident_char(b[end]) {
            end += 1;
        }
        fields.push(src[p + 1..end].to_string());
        p = end;
    }
    (fields, p)
}

fn lex_number(src: &str, p: usize) -> Result<(Tok, usize), String> {
    let b = src.as_bytes();
    let mut end = p;
    if matches!(b[end], b'+' | b'-') {
        end += 1;
    }
    while end < b.len() && (b[end].is_ascii_alphanumeric() || matches!(b[end], b'.' | b'_')) {
        // an exponent sign belongs to the number: 1e-5
        end += 1;
        if matches!(b[end - 1], b'e' | b'E' | b'p' | b'P')
            && end < b.len()
            && matches!(b[end], b'+' | b'-')
        {
            end += 1;
        }
    }
    let text: String = src[p..end].chars().filter(|&c| c != '_').collect();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(d) => (-1i64, d),
        None => (1, text.strip_prefix('+').unwrap_or(&text)),
    };
    let int = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(bin) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        i64::from_str_radix(bin, 2).ok()
    } else if let Some(oct) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        i64::from_str_radix(oct, 8).ok()
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&digits[1..], 8).ok()
    } else {
        digits.parse::<i64>().ok()
    };
    if let Some(i) = int {
        return Ok((Tok::Int(sign * i), end));
    }
    match digits.parse::<f64>() {
        Ok(f) if !digits.is_empty() && !digits.starts_with(['i', 'I', 'n', 'N']) => {
            Ok((Tok::Float(sign as f64 * f), end))
        }
        _ => Err(format!("bad number syntax: {:?}", &src[p..end])),
    }
}

fn lex_quoted(src: &str, p: usize) -> Result<(Tok, usize), String> {
    let mut out = String::new();
    let mut chars = src[p + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((Tok::Str(out), p + 1 + i + 1)),
            '\n' => return Err("unterminated quoted string".into()),
            '\\' => out.push(unescape(&mut chars)?),
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

fn lex_char(src: &str, p: usize) -> Result<(Tok, usize), String> {
    let mut chars = src[p + 1..].char_indices();
    let c = match chars.next() {
        Some((_, '\\')) => unescape(&mut chars)?,
        Some((_, c)) if c != '\'' && c != '\n' => c,
        _ => return Err("malformed character constant".into()),
    };
    match chars.next() {
        Some((i, '\'')) => Ok((Tok::Int(c as i64), p + 1 + i + 1)),
        _ => Err("malformed character constant".into()),
    }
}

/// Go escape sequences after a backslash.
fn unescape(chars: &mut std::str::CharIndices<'_>) -> Result<char, String> {
    let (_, c) = chars.next().ok_or("unterminated escape")?;
    let hex = |chars: &mut std::str::CharIndices<'_>, n: usize| -> Result<char, String> {
        let s: String = chars.take(n).map(|(_, c)| c).collect();
        u32::from_str_radix(&s, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| format!("invalid escape \\{c}{s}"))
    };
    Ok(match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'a' => '\u{07}',
        'b' => '\u{08}',
        'f' => '\u{0c}',
        'v' => '\u{0b}',
        '\\' => '\\',
        '"' => '"',
        '\'' => '\'',
        'x' => hex(chars, 2)?,
        'u' => hex(chars, 4)?,
        'U' => hex(chars, 8)?,
        other => return Err(format!("unknown escape sequence \\{other}")),
    })
}
