//! Parses lexed pieces into a tree shaped like Go's `text/template/parse` tree (an `else if` is an
//! `if` inside the else list), so Ollama's tree edits can be mirrored exactly.

use super::lexer::{Piece, Tok, Token};
use super::value::Value;
use super::{funcs, GoError};

/// Deepest nesting of `if`/`range`/`with` and of parentheses; real templates use a handful.
const MAX_NESTING: usize = 100;

#[derive(Clone, Debug)]
pub(super) enum Node {
    Text(String),
    Action { line: usize, pipe: Pipeline },
    If(Branch),
    Range(Branch),
    With(Branch),
    Break,
    Continue,
}

#[derive(Clone, Debug)]
pub(super) struct Branch {
    pub line: usize,
    pub pipe: Pipeline,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

#[derive(Clone, Debug)]
pub(super) struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`); two only in `range $i, $v := …`.
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Command>,
}

#[derive(Clone, Debug)]
pub(super) struct Command {
    pub args: Vec<Arg>,
}

#[derive(Clone, Debug)]
pub(super) enum Arg {
    Dot,
    Field(Vec<String>),
    Var(String, Vec<String>),
    Func(String),
    Lit(Value),
    Pipe(Box<Pipeline>),
    Chain(Box<Arg>, Vec<String>),
}

enum ListEnd {
    End(usize),
    Else(Vec<Token>, usize),
    Eof,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    If,
    Range,
    With,
}

pub(super) fn parse(pieces: Vec<Piece>) -> Result<Vec<Node>, GoError> {
    let mut p = Parser {
        pieces: pieces.into_iter(),
        depth: 0,
        range_depth: 0,
    };
    match p.list()? {
        (nodes, ListEnd::Eof) => Ok(nodes),
        (_, ListEnd::End(line)) => Err(p.error_at(Some(line), "unexpected {{end}}")),
        (_, ListEnd::Else(_, line)) => Err(p.error_at(Some(line), "unexpected {{else}}")),
    }
}

struct Parser {
    pieces: std::vec::IntoIter<Piece>,
    depth: usize,
    range_depth: usize,
}

impl Parser {
    fn error_at(&self, line: Option<usize>, msg: &str) -> GoError {
        GoError {
            kind: super::GoErrorKind::Syntax,
            line,
            message: msg.to_string(),
        }
    }

    fn list(&mut self) -> Result<(Vec<Node>, ListEnd), GoError> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            let (tokens, line) = match piece {
                Piece::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Piece::Action { tokens, line } => (tokens, line),
            };
            let keyword = match &tokens[0].tok {
                Tok::Ident(word) => word.as_str(),
                _ => "",
            };
            let rest = &tokens[1..];
            match keyword {
                "end" => {
                    expect_empty(rest, line, "end")?;
                    return Ok((nodes, ListEnd::End(line)));
                }
                "else" => return Ok((nodes, ListEnd::Else(rest.to_vec(), line))),
                "if" => nodes.push(Node::If(self.control(Kind::If, rest, line)?)),
                "range" => nodes.push(Node::Range(self.control(Kind::Range, rest, line)?)),
                "with" => nodes.push(Node::With(self.control(Kind::With, rest, line)?)),
                "break" | "continue" => {
                    expect_empty(rest, line, keyword)?;
                    if self.range_depth == 0 {
                        return Err(GoError::syntax(
                            line,
                            format!("{{{{{keyword}}}}} outside {{{{range}}}}"),
                        ));
                    }
                    nodes.push(if keyword == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                "define" | "template" | "block" => {
                    return Err(GoError::syntax(
                        line,
                        format!("{{{{{keyword}}}}} is not supported in model templates"),
                    ));
                }
                _ => nodes.push(Node::Action {
                    line,
                    pipe: pipeline(&tokens, line, false, 0)?,
                }),
            }
        }
        Ok((nodes, ListEnd::Eof))
    }

    fn control(&mut self, kind: Kind, tokens: &[Token], line: usize) -> Result<Branch, GoError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(GoError::syntax(
                line,
                "control structures nested too deeply".into(),
            ));
        }
        let pipe = pipeline(tokens, line, kind == Kind::Range, 0)?;
        if kind == Kind::Range {
            self.range_depth += 1;
        }
        let (list, end) = self.list()?;
        if kind == Kind::Range {
            self.range_depth -= 1;
        }
        let else_list = match end {
            ListEnd::End(_) => None,
            ListEnd::Eof => {
                return Err(GoError::syntax(
                    line,
                    "unexpected EOF: missing {{end}}".into(),
                ))
            }
            ListEnd::Else(rest, else_line) => {
                let chained = match (kind, rest.first().map(|t| &t.tok)) {
                    (Kind::If, Some(Tok::Ident(w))) if w == "if" => Some(Kind::If),
                    (Kind::With, Some(Tok::Ident(w))) if w == "with" => Some(Kind::With),
                    _ => None,
                };
                if let Some(chained) = chained {
                    // `{{else if …}}` shares the outer `{{end}}`.
                    let inner = self.control(chained, &rest[1..], else_line)?;
                    Some(vec![if chained == Kind::If {
                        Node::If(inner)
                    } else {
                        Node::With(inner)
                    }])
                } else {
                    expect_empty(&rest, else_line, "else")?;
                    match self.list()? {
                        (nodes, ListEnd::End(_)) => Some(nodes),
                        (_, ListEnd::Else(_, l)) => {
                            return Err(GoError::syntax(
                                l,
                                "expected {{end}}, found {{else}}".into(),
                            ))
                        }
                        (_, ListEnd::Eof) => {
                            return Err(GoError::syntax(
                                line,
                                "unexpected EOF: missing {{end}}".into(),
                            ))
                        }
                    }
                }
            }
        };
        self.depth -= 1;
        Ok(Branch {
            line,
            pipe,
            list,
            else_list,
        })
    }
}

fn expect_empty(rest: &[Token], line: usize, what: &str) -> Result<(), GoError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(GoError::syntax(
            line,
            format!("unexpected {:?} in {what}", rest[0].tok),
        ))
    }
}

/// `[$v :=|=] cmd | cmd …`, or `$i, $v :=` when `range` allows two variables.
fn pipeline(
    tokens: &[Token],
    line: usize,
    is_range: bool,
    depth: usize,
) -> Result<Pipeline, GoError> {
    if depth > MAX_NESTING {
        return Err(GoError::syntax(
            line,
            "parentheses nested too deeply".into(),
        ));
    }
    let mut decl = Vec::new();
    let mut assign = false;
    let mut rest = tokens;
    let bare_var = |t: Option<&Token>| match t.map(|t| &t.tok) {
        Some(Tok::Var(name, fields)) if fields.is_empty() => Some(name.clone()),
        _ => None,
    };
    let is_decl = |t: Option<&Token>| matches!(t.map(|t| &t.tok), Some(Tok::Declare | Tok::Assign));
    if let (Some(v), true) = (bare_var(rest.first()), is_decl(rest.get(1))) {
        assign = rest[1].tok == Tok::Assign;
        decl.push(v);
        rest = &rest[2..];
    } else if is_range && matches!(rest.get(1).map(|t| &t.tok), Some(Tok::Comma)) {
        match (
            bare_var(rest.first()),
            bare_var(rest.get(2)),
            is_decl(rest.get(3)),
        ) {
            (Some(a), Some(b), true) => {
                assign = rest[3].tok == Tok::Assign;
                decl = vec![a, b];
                rest = &rest[4..];
            }
            _ => {
                return Err(GoError::syntax(
                    line,
                    "range can only initialize variables as `$i, $v :=`".into(),
                ))
            }
        }
    }
    if decl.iter().any(|v| v == "$") {
        return Err(GoError::syntax(line, "cannot assign to $".into()));
    }
    let mut cmds = Vec::new();
    for part in split_top_level(rest, line)? {
        cmds.push(command(part, line, depth)?);
    }
    if cmds.is_empty() {
        return Err(GoError::syntax(line, "missing value for command".into()));
    }
    Ok(Pipeline { decl, assign, cmds })
}

/// Splits at `|` outside parentheses.
fn split_top_level(tokens: &[Token], line: usize) -> Result<Vec<&[Token]>, GoError> {
    let mut parts = Vec::new();
    let (mut level, mut start) = (0usize, 0);
    for (i, t) in tokens.iter().enumerate() {
        match t.tok {
            Tok::LParen => level += 1,
            Tok::RParen => {
                level = level
                    .checked_sub(1)
                    .ok_or_else(|| GoError::syntax(line, "unexpected )".into()))?
            }
            Tok::Pipe if level == 0 => {
                parts.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if level != 0 {
        return Err(GoError::syntax(line, "unclosed left paren".into()));
    }
    if start < tokens.len() || !parts.is_empty() {
        parts.push(&tokens[start..]);
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(GoError::syntax(line, "missing command around |".into()));
    }
    Ok(parts)
}

fn command(tokens: &[Token], line: usize, depth: usize) -> Result<Command, GoError> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let (mut arg, next) = operand(tokens, i, line, depth)?;
        i = next;
        // A field right after an operand, without a space, chains: `(index .M 0).Role`.
        while let Some(Token {
            tok: Tok::Field(fields),
            spaced: false,
        }) = tokens.get(i)
        {
            arg = Arg::Chain(Box::new(arg), fields.clone());
            i += 1;
        }
        args.push(arg);
    }
    Ok(Command { args })
}

fn operand(tokens: &[Token], i: usize, line: usize, depth: usize) -> Result<(Arg, usize), GoError> {
    let arg = match &tokens[i].tok {
        Tok::Dot => Arg::Dot,
        Tok::Field(f) => Arg::Field(f.clone()),
        Tok::Var(name, f) => Arg::Var(name.clone(), f.clone()),
        Tok::Str(s) => Arg::Lit(Value::str(s)),
        Tok::Int(n) => Arg::Lit(Value::Int(*n)),
        Tok::Float(f) => Arg::Lit(Value::Float(*f)),
        Tok::Ident(w) if w == "true" || w == "false" => Arg::Lit(Value::Bool(w == "true")),
        Tok::Ident(w) if w == "nil" => Arg::Lit(Value::Nil),
        Tok::Ident(w) if funcs::is_known(w) => Arg::Func(w.clone()),
        Tok::Ident(w) => return Err(GoError::syntax(line, format!("function {w:?} not defined"))),
        Tok::LParen => {
            let close = matching_paren(tokens, i)
                .ok_or_else(|| GoError::syntax(line, "unclosed left paren".into()))?;
            let inner = pipeline(&tokens[i + 1..close], line, false, depth + 1)?;
            if !inner.decl.is_empty() {
                return Err(GoError::syntax(
                    line,
                    "variable declaration inside parentheses".into(),
                ));
            }
            return Ok((Arg::Pipe(Box::new(inner)), close + 1));
        }
        other => {
            return Err(GoError::syntax(
                line,
                format!("unexpected {other:?} in operand"),
            ))
        }
    };
    Ok((arg, i + 1))
}

fn matching_paren(tokens: &[Token], open: usize) -> Option<usize> {
    let mut level = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.tok {
            Tok::LParen => level += 1,
            Tok::RParen => {
                level -= 1;
                if level == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}
