//! A small Go `text/template` engine: the subset Ollama model templates use, with a step budget.
//!
//! Supported: text with `{{- -}}` trim markers and `{{/* comments */}}`; `if`/`else if`/`else`,
//! `range` (lists, maps, integers; `$i, $v :=`; `else`; `break`/`continue`), `with`/`else with`;
//! `$x := …` and `$x = …`; pipelines with `|` and parentheses; `.Field` chains, `$`, `$x.Field`;
//! the functions `and or not eq ne lt le gt ge len index slice print printf println` and Ollama's
//! `json currentDate yesterdayDate toTypeScriptType`.
//!
//! Not supported (a clear syntax error instead): `define`/`template`/`block`, methods, `call`,
//! `html`/`js`/`urlquery`. Deviations kept on purpose: `nil` and missing fields print as nothing
//! (Go prints `<no value>`), and lists and maps print as JSON (what Ollama's tool types print).
//!
//! Must never: recurse without bound (nesting is capped at parse time), run past its step budget
//! or output cap, or panic on any template text.

mod exec;
mod funcs;
mod lexer;
mod parse;
pub(crate) mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

pub(crate) use exec::Limits;
use parse::{Arg, Node, Pipeline};
pub(crate) use value::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GoErrorKind {
    Syntax,
    Exec,
    Fuel,
    Output,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GoError {
    pub kind: GoErrorKind,
    pub line: Option<usize>,
    pub message: String,
}

impl GoError {
    fn syntax(line: usize, message: String) -> GoError {
        GoError {
            kind: GoErrorKind::Syntax,
            line: Some(line),
            message,
        }
    }
}

/// A parsed template.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    root: Vec<Node>,
}

impl Template {
    pub(crate) fn parse(source: &str) -> Result<Template, GoError> {
        Ok(Template {
            root: parse::parse(lexer::lex(source)?)?,
        })
    }

    /// Renders against `data`, appending to `out`; `limits` is shared across calls.
    pub(crate) fn execute(
        &self,
        data: &Value,
        limits: &mut Limits,
        out: &mut String,
    ) -> Result<(), GoError> {
        let mut exec = exec::Exec {
            out,
            limits,
            root: data,
            vars: Vec::new(),
            line: 1,
        };
        exec.run(&self.root)
    }

    /// Lower-cased names of every field and variable the template mentions (Ollama's `Vars()`).
    pub(crate) fn identifiers(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        ident_nodes(&self.root, &mut names);
        names
    }

    /// Appends `{{ .Response }}` (what Ollama does to templates that mention neither
    /// `.Messages` nor `.Response`).
    pub(crate) fn append_response(&mut self) {
        let pipe = Pipeline {
            decl: Vec::new(),
            assign: false,
            cmds: vec![parse::Command {
                args: vec![Arg::Field(vec!["Response".into()])],
            }],
        };
        self.root.push(Node::Action { line: 1, pipe });
    }

    /// A copy that ends right after the first `.Response` field: everything the walk visits
    /// after it is deleted (Ollama's `deleteNode`), so the last turn stops where the model writes.
    pub(crate) fn cut_after_response(&self) -> Template {
        let mut cut = false;
        let mut root = self.root.clone();
        cut_list(&mut root, &mut cut);
        Template { root }
    }
}

fn ident_nodes(nodes: &[Node], names: &mut BTreeSet<String>) {
    for node in nodes {
        match node {
            Node::Action { pipe, .. } => ident_pipe(pipe, names),
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                ident_pipe(&b.pipe, names);
                ident_nodes(&b.list, names);
                if let Some(e) = &b.else_list {
                    ident_nodes(e, names);
                }
            }
            Node::Text(_) | Node::Break | Node::Continue => {}
        }
    }
}

fn ident_pipe(pipe: &Pipeline, names: &mut BTreeSet<String>) {
    for cmd in &pipe.cmds {
        for arg in &cmd.args {
            match arg {
                Arg::Field(f) => names.extend(f.iter().map(|s| s.to_lowercase())),
                Arg::Var(v, f) => {
                    names.insert(v.to_lowercase());
                    names.extend(f.iter().map(|s| s.to_lowercase()));
                }
                Arg::Pipe(p) => ident_pipe(p, names),
                Arg::Dot | Arg::Func(_) | Arg::Lit(_) | Arg::Chain(..) => {}
            }
        }
    }
}

fn cut_list(nodes: &mut Vec<Node>, cut: &mut bool) {
    let old = std::mem::take(nodes);
    for node in old {
        if *cut {
            break;
        }
        if let Some(node) = cut_node(node, cut) {
            nodes.push(node);
        }
    }
}

fn cut_node(node: Node, cut: &mut bool) -> Option<Node> {
    match node {
        Node::Action { line, mut pipe } => {
            cut_pipe(&mut pipe, cut).then_some(Node::Action { line, pipe })
        }
        Node::If(mut b) => {
            cut_branch(&mut b, cut);
            Some(Node::If(b))
        }
        Node::Range(mut b) => {
            cut_branch(&mut b, cut);
            Some(Node::Range(b))
        }
        Node::With(mut b) => {
            cut_branch(&mut b, cut);
            Some(Node::With(b))
        }
        other => Some(other),
    }
}

/// Ollama walks a branch's lists but not its condition.
fn cut_branch(b: &mut parse::Branch, cut: &mut bool) {
    cut_list(&mut b.list, cut);
    if *cut {
        b.else_list = None;
    } else if let Some(e) = &mut b.else_list {
        cut_list(e, cut);
    }
}

/// Keeps arguments up to and including a `…Response…` field; false when a command is emptied,
/// which deletes the whole action.
fn cut_pipe(pipe: &mut Pipeline, cut: &mut bool) -> bool {
    for cmd in &mut pipe.cmds {
        let old = std::mem::take(&mut cmd.args);
        for arg in old {
            if *cut {
                break;
            }
            match arg {
                // An emptied parenthesized pipeline drops just that argument.
                Arg::Pipe(mut p) => {
                    if cut_pipe(&mut p, cut) {
                        cmd.args.push(Arg::Pipe(p));
                    }
                }
                arg => {
                    if let Arg::Field(f) = &arg {
                        *cut = f.iter().any(|s| s == "Response");
                    }
                    cmd.args.push(arg);
                }
            }
        }
        if cmd.args.is_empty() {
            return false;
        }
    }
    true
}
