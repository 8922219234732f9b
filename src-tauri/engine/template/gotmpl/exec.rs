//! Runs a parsed Go template against a [`Value`], with a step budget and an output cap.

use time::OffsetDateTime;

use super::parse::{Arg, Branch, Command, Node, Pipeline};
use super::value::Value;
use super::{funcs, GoError, GoErrorKind};

/// Limits shared by every execution of one render (Ollama's legacy mode runs a template once
/// per turn).
pub(crate) struct Limits {
    pub fuel: u64,
    pub max_output: usize,
    pub now: OffsetDateTime,
}

enum Flow {
    Normal,
    Break,
    Continue,
}

pub(super) struct Exec<'a> {
    pub out: &'a mut String,
    pub limits: &'a mut Limits,
    pub root: &'a Value,
    /// Variable stack; scopes end by truncating back to a mark. `$` is the root data.
    pub vars: Vec<(String, Value)>,
    pub line: usize,
}

type R<T> = Result<T, GoError>;

impl Exec<'_> {
    fn err(&self, message: impl Into<String>) -> GoError {
        GoError {
            kind: GoErrorKind::Exec,
            line: Some(self.line),
            message: message.into(),
        }
    }

    fn step(&mut self, cost: u64) -> R<()> {
        match self.limits.fuel.checked_sub(cost) {
            Some(left) => {
                self.limits.fuel = left;
                Ok(())
            }
            None => Err(GoError {
                kind: GoErrorKind::Fuel,
                line: Some(self.line),
                message: "step budget exhausted".into(),
            }),
        }
    }

    fn write(&mut self, s: &str) -> R<()> {
        if self.out.len().saturating_add(s.len()) > self.limits.max_output {
            return Err(GoError {
                kind: GoErrorKind::Output,
                line: Some(self.line),
                message: "output limit reached".into(),
            });
        }
        self.out.push_str(s);
        Ok(())
    }

    pub(super) fn run(&mut self, nodes: &[Node]) -> R<()> {
        let root = self.root.clone();
        self.list(nodes, &root).map(|_| ())
    }

    fn list(&mut self, nodes: &[Node], dot: &Value) -> R<Flow> {
        for node in nodes {
            self.step(1)?;
            match node {
                Node::Text(t) => self.write(t)?,
                Node::Action { line, pipe } => {
                    self.line = *line;
                    let v = self.pipeline(pipe, dot)?;
                    // Declarations and assignments print nothing.
                    if pipe.decl.is_empty() {
                        self.write(&v.to_output())?;
                    }
                }
                Node::If(b) => match self.if_with(b, dot, false)? {
                    Flow::Normal => {}
                    flow => return Ok(flow),
                },
                Node::With(b) => match self.if_with(b, dot, true)? {
                    Flow::Normal => {}
                    flow => return Ok(flow),
                },
                Node::Range(b) => self.range(b, dot)?,
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn if_with(&mut self, b: &Branch, dot: &Value, with: bool) -> R<Flow> {
        self.line = b.line;
        let mark = self.vars.len();
        let v = self.pipeline(&b.pipe, dot)?;
        let flow = if v.is_true() {
            let inner_dot = if with { v } else { dot.clone() };
            self.list(&b.list, &inner_dot)?
        } else if let Some(else_list) = &b.else_list {
            self.list(else_list, dot)?
        } else {
            Flow::Normal
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn range(&mut self, b: &Branch, dot: &Value) -> R<()> {
        self.line = b.line;
        let mark = self.vars.len();
        let v = self.commands(&b.pipe.cmds, dot)?;
        // Map entries are bounded by the data; an integer range is counted, never collected.
        let entries: Vec<(Value, Value)> = match &v {
            Value::Map(m) => m.iter().filter(|(k, _)| *k != super::value::JSON_KEY).map(|(k, x)| (Value::str(k), x.clone())).collect(),
            _ => Vec::new(),
        };
        let len = match &v {
            Value::List(l) => l.len() as u64,
            Value::Map(_) => entries.len() as u64,
            Value::Int(n) if b.pipe.decl.len() < 2 => (*n).max(0) as u64,
            Value::Nil => 0,
            other => {
                return Err(self.err(format!("range can't iterate over {}", other.to_output())))
            }
        };
        if len == 0 {
            if let Some(else_list) = &b.else_list {
                self.list(else_list, dot)?;
            }
            return Ok(());
        }
        for i in 0..len {
            self.step(1)?;
            let (key, item) = match &v {
                Value::List(l) => (Value::Int(i as i64), l[i as usize].clone()),
                Value::Map(_) => entries[i as usize].clone(),
                _ => (Value::Int(i as i64), Value::Int(i as i64)),
            };
            self.vars.truncate(mark);
            match b.pipe.decl.as_slice() {
                [] => {}
                [v] => self.bind(v, item.clone(), b.pipe.assign)?,
                [k, v] => {
                    self.bind(k, key, b.pipe.assign)?;
                    self.bind(v, item.clone(), b.pipe.assign)?;
                }
                _ => return Err(self.err("too many range variables")),
            }
            if let Flow::Break = self.list(&b.list, &item)? {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn bind(&mut self, name: &str, v: Value, assign: bool) -> R<()> {
        if !assign {
            self.vars.push((name.to_string(), v));
            return Ok(());
        }
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => Err(self.err(format!("undefined variable: {name}"))),
        }
    }

    fn pipeline(&mut self, pipe: &Pipeline, dot: &Value) -> R<Value> {
        let v = self.commands(&pipe.cmds, dot)?;
        if let Some(name) = pipe.decl.first() {
            self.bind(name, v.clone(), pipe.assign)?;
        }
        Ok(v)
    }

    fn commands(&mut self, cmds: &[Command], dot: &Value) -> R<Value> {
        let mut piped: Option<Value> = None;
        for cmd in cmds {
            piped = Some(self.command(cmd, dot, piped)?);
        }
        piped.ok_or_else(|| self.err("empty pipeline"))
    }

    fn command(&mut self, cmd: &Command, dot: &Value, piped: Option<Value>) -> R<Value> {
        match &cmd.args[0] {
            Arg::Func(name) => self.call(name, &cmd.args[1..], dot, piped),
            first => {
                if cmd.args.len() > 1 || piped.is_some() {
                    return Err(self.err("can't give argument to non-function"));
                }
                self.arg(first, dot)
            }
        }
    }

    fn arg(&mut self, arg: &Arg, dot: &Value) -> R<Value> {
        match arg {
            Arg::Dot => Ok(dot.clone()),
            Arg::Field(fields) => self.fields(dot.clone(), fields),
            Arg::Var(name, fields) => {
                let base = if name == "$" {
                    self.root.clone()
                } else {
                    match self.vars.iter().rev().find(|(n, _)| n == name) {
                        Some((_, v)) => v.clone(),
                        None => return Err(self.err(format!("undefined variable: {name}"))),
                    }
                };
                self.fields(base, fields)
            }
            // A function name as an argument is a call without arguments.
            Arg::Func(name) => self.call(name, &[], dot, None),
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Pipe(p) => self.commands(&p.cmds, dot),
            Arg::Chain(base, fields) => {
                let v = self.arg(base, dot)?;
                self.fields(v, fields)
            }
        }
    }

    fn fields(&self, mut v: Value, fields: &[String]) -> R<Value> {
        for f in fields {
            v = match &v {
                Value::Map(m) => m.get(f).cloned().unwrap_or(Value::Nil),
                Value::Nil => Value::Nil,
                other => {
                    return Err(self.err(format!(
                        "can't evaluate field {f} in type {}",
                        other.type_name()
                    )))
                }
            };
        }
        Ok(v)
    }

    fn call(&mut self, name: &str, args: &[Arg], dot: &Value, piped: Option<Value>) -> R<Value> {
        self.step(1)?;
        if name == "and" || name == "or" {
            return self.and_or(name == "and", args, dot, piped);
        }
        let mut values = Vec::with_capacity(args.len() + 1);
        for a in args {
            values.push(self.arg(a, dot)?);
        }
        values.extend(piped);
        let result = funcs::call(name, &values, self.limits.now)
            .map_err(|m| self.err(format!("error calling {name}: {m}")))?;
        // Charge for the text a function makes, so repeated doubling runs out of budget.
        if let Value::Str(s) = &result {
            self.step(s.len() as u64 / 64)?;
        }
        Ok(result)
    }

    /// `and` returns the first false argument or the last; `or` the first true one or the last.
    fn and_or(
        &mut self,
        is_and: bool,
        args: &[Arg],
        dot: &Value,
        piped: Option<Value>,
    ) -> R<Value> {
        if args.is_empty() && piped.is_none() {
            return Err(self.err(format!(
                "wrong number of args for {}: want at least 1 got 0",
                if is_and { "and" } else { "or" }
            )));
        }
        let mut last = Value::Nil;
        for a in args {
            last = self.arg(a, dot)?;
            if last.is_true() != is_and {
                return Ok(last);
            }
        }
        Ok(piped.unwrap_or(last))
    }
}
