//! A direct evaluator for the small jq subset that matchers, validators and group keys are
//! usually written in, run on `serde_json::Value` without converting the input to jaq's values.
//!
//! The subset: `.`, paths (`.a.b`, `."a b"`, `.["a"]`, `.[0]`), literals (strings without
//! interpolation, numbers, `true`, `false`, `null`), `|`, `//`, `or`, `and`, `==`, `!=`, `not`,
//! `startswith("…")`, `endswith("…")` and parentheses. A program outside it has no fast form.
//!
//! The fast form never decides a case where jq would raise an error or where equality needs more
//! than scalar comparison: it answers [`Fallback`] and the caller runs the compiled jaq filter,
//! which gives jq's own answer. So a fast form only ever returns what jaq returns.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::Value;

use crate::json_truthy as truthy;

/// The fast form cannot decide this input; run the jaq filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fallback;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Key(String),
    Index(i64),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// A path, with where it starts in the program and where each step ends.
    Path(Vec<Step>, usize, Vec<usize>),
    Lit(Value),
    Pipe(Box<Expr>, Box<Expr>),
    Alt(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Eq(Box<Expr>, Box<Expr>, bool),
    Not,
    StartsWith(String),
    EndsWith(String),
}

type Out<'a> = Result<Cow<'a, Value>, Fallback>;

/// Equality as jq has it, for scalars; anything else is left to jaq.
fn scalar_eq(a: &Value, b: &Value) -> Result<bool, Fallback> {
    match (a, b) {
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
            Err(Fallback)
        }
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Ok(x == y),
            _ if x.is_f64() || y.is_f64() => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => Ok(x == y),
                _ => Err(Fallback),
            },
            // Integers beyond i64: jaq keeps them exact in its own way.
            _ => Err(Fallback),
        },
        _ => Ok(a == b),
    }
}

impl Expr {
    pub(crate) fn eval<'a>(&self, input: &'a Value) -> Out<'a> {
        match self {
            Self::Path(steps, ..) => {
                let mut at = input;
                for step in steps {
                    at = match (step, at) {
                        (_, Value::Null) => return Ok(Cow::Owned(Value::Null)),
                        (Step::Key(k), Value::Object(map)) => match map.get(k) {
                            Some(v) => v,
                            None => return Ok(Cow::Owned(Value::Null)),
                        },
                        (Step::Index(i), Value::Array(items)) => {
                            let len = i64::try_from(items.len()).map_err(|_| Fallback)?;
                            let i = if *i < 0 { len + i } else { *i };
                            match usize::try_from(i).ok().and_then(|i| items.get(i)) {
                                Some(v) => v,
                                None => return Ok(Cow::Owned(Value::Null)),
                            }
                        }
                        // Indexing anything else is a jq error.
                        _ => return Err(Fallback),
                    };
                }
                Ok(Cow::Borrowed(at))
            }
            Self::Lit(v) => Ok(Cow::Owned(v.clone())),
            Self::Pipe(left, right) => match left.eval(input)? {
                Cow::Borrowed(v) => right.eval(v),
                Cow::Owned(v) => right.eval(&v).map(|out| Cow::Owned(out.into_owned())),
            },
            Self::Alt(left, right) => {
                let first = left.eval(input)?;
                if truthy(&first) {
                    Ok(first)
                } else {
                    right.eval(input)
                }
            }
            Self::Or(left, right) => {
                let value = truthy(&*left.eval(input)?) || truthy(&*right.eval(input)?);
                Ok(Cow::Owned(Value::Bool(value)))
            }
            Self::And(left, right) => {
                let value = truthy(&*left.eval(input)?) && truthy(&*right.eval(input)?);
                Ok(Cow::Owned(Value::Bool(value)))
            }
            Self::Eq(left, right, equal) => {
                // jq evaluates the right operand first; both have one output here, so order does
                // not change the result.
                let same = scalar_eq(&*left.eval(input)?, &*right.eval(input)?)?;
                Ok(Cow::Owned(Value::Bool(same == *equal)))
            }
            Self::Not => Ok(Cow::Owned(Value::Bool(!truthy(input)))),
            Self::StartsWith(prefix) => match input {
                Value::String(s) => Ok(Cow::Owned(Value::Bool(s.starts_with(prefix.as_str())))),
                _ => Err(Fallback),
            },
            Self::EndsWith(suffix) => match input {
                Value::String(s) => Ok(Cow::Owned(Value::Bool(s.ends_with(suffix.as_str())))),
                _ => Err(Fallback),
            },
        }
    }
}

impl Expr {
    /// For a program that is one path yielding `null` on `input`: the part of the path up to the
    /// first step that found nothing (`.fields.nope` of `.fields.nope.deeper`), as a range of the
    /// program's text. `None` for any other program, or when the path yields a value.
    pub(crate) fn null_origin(&self, input: &Value) -> Option<Range<usize>> {
        let Self::Path(steps, start, ends) = self else {
            return None;
        };
        let mut at = input;
        for (step, end) in steps.iter().zip(ends) {
            let next = match (step, at) {
                (Step::Key(k), Value::Object(map)) => map.get(k),
                (Step::Index(i), Value::Array(items)) => {
                    let len = i64::try_from(items.len()).ok()?;
                    let i = if *i < 0 { len + i } else { *i };
                    usize::try_from(i).ok().and_then(|i| items.get(i))
                }
                _ => None,
            };
            match next {
                Some(Value::Null) | None => return Some(*start..*end),
                Some(v) => at = v,
            }
        }
        at.is_null()
            .then(|| *start..ends.last().copied().unwrap_or(*start + 1))
    }
}

/// Parses `code` into the fast subset, or `None` when any part of it is outside.
pub(crate) fn parse(code: &str) -> Option<Expr> {
    // Comments (and `#` inside strings, rarely) are left to jaq.
    if code.contains('#') {
        return None;
    }
    let mut p = Parser { s: code, at: 0 };
    let expr = p.pipe()?;
    p.ws();
    (p.at == code.len()).then_some(expr)
}

struct Parser<'a> {
    s: &'a str,
    at: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

const KEYWORDS: &[&str] = &[
    "and", "or", "not", "if", "then", "elif", "else", "end", "as", "def", "reduce", "foreach",
    "try", "catch", "label", "import", "include", "true", "false", "null", "__loc__",
];

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.at..]
    }

    fn ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.s.len() - trimmed.len();
    }

    /// Consumes `token` (after white space) when it is next and not the start of a longer word.
    fn eat(&mut self, token: &str) -> bool {
        self.ws();
        if !self.rest().starts_with(token) {
            return false;
        }
        let word = token.bytes().all(is_ident);
        let next = self.rest().as_bytes().get(token.len()).copied();
        if word && next.is_some_and(is_ident) {
            return false;
        }
        // `/` of `//` is not `//=`, `=` of `==` is not `==`…; `|` is not `|=`.
        if matches!(token, "|" | "//") && next == Some(b'=') {
            return false;
        }
        if token == "|" && next == Some(b'|') {
            return false;
        }
        self.at += token.len();
        true
    }

    fn ident(&mut self) -> Option<String> {
        let bytes = self.rest().as_bytes();
        if !bytes.first().copied().is_some_and(is_ident_start) {
            return None;
        }
        let len = bytes.iter().take_while(|c| is_ident(**c)).count();
        let word = self.rest()[..len].to_owned();
        self.at += len;
        Some(word)
    }

    fn pipe(&mut self) -> Option<Expr> {
        let left = self.alt()?;
        if self.eat("|") {
            let right = self.pipe()?;
            return Some(Expr::Pipe(Box::new(left), Box::new(right)));
        }
        Some(left)
    }

    fn alt(&mut self) -> Option<Expr> {
        let left = self.or()?;
        if self.eat("//") {
            let right = self.alt()?;
            return Some(Expr::Alt(Box::new(left), Box::new(right)));
        }
        Some(left)
    }

    fn or(&mut self) -> Option<Expr> {
        let mut left = self.and()?;
        while self.eat("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Some(left)
    }

    fn and(&mut self) -> Option<Expr> {
        let mut left = self.cmp()?;
        while self.eat("and") {
            left = Expr::And(Box::new(left), Box::new(self.cmp()?));
        }
        Some(left)
    }

    fn cmp(&mut self) -> Option<Expr> {
        let left = self.term()?;
        for (token, equal) in [("==", true), ("!=", false)] {
            if self.eat(token) {
                let right = self.term()?;
                return Some(Expr::Eq(Box::new(left), Box::new(right), equal));
            }
        }
        // Other operators (`<`, `+`, `,`, `?`…) are outside the subset.
        Some(left)
    }

    fn term(&mut self) -> Option<Expr> {
        self.ws();
        if self.eat("(") {
            let inner = self.pipe()?;
            return self.eat(")").then_some(inner);
        }
        if self.rest().starts_with('.') {
            return self.path();
        }
        if self.rest().starts_with('"') {
            return self.string().map(|s| Expr::Lit(Value::String(s)));
        }
        if self.rest().starts_with(|c: char| c.is_ascii_digit()) {
            return self.number().map(Expr::Lit);
        }
        for (word, value) in [
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
            ("null", Value::Null),
        ] {
            if self.eat(word) {
                return Some(Expr::Lit(value));
            }
        }
        if self.eat("not") {
            return Some(Expr::Not);
        }
        for (name, build) in [
            ("startswith", Expr::StartsWith as fn(String) -> Expr),
            ("endswith", Expr::EndsWith),
        ] {
            if self.eat(name) {
                if !self.eat("(") {
                    return None;
                }
                self.ws();
                let arg = self.string()?;
                return self.eat(")").then(|| build(arg));
            }
        }
        None
    }

    /// A key after a `.`: a name or a string literal.
    fn key(&mut self) -> Option<Step> {
        if self.rest().starts_with('"') {
            return self.string().map(Step::Key);
        }
        let key = self.ident()?;
        (!KEYWORDS.contains(&key.as_str())).then_some(Step::Key(key))
    }

    /// `[…]` after a path: a string key or an integer index.
    fn bracket(&mut self) -> Option<Step> {
        self.at += 1;
        self.ws();
        let step = if self.rest().starts_with('"') {
            Step::Key(self.string()?)
        } else {
            let negative = self.eat("-");
            self.ws();
            let digits = self.rest().bytes().take_while(u8::is_ascii_digit).count();
            let n: i64 = self.rest()[..digits].parse().ok()?;
            self.at += digits;
            Step::Index(if negative { -n } else { n })
        };
        self.eat("]").then_some(step)
    }

    fn path(&mut self) -> Option<Expr> {
        // The leading `.`: identity, or the start of `.key`.
        let start = self.at;
        self.at += 1;
        let mut steps = Vec::new();
        let mut ends = Vec::new();
        match self.rest().bytes().next() {
            Some(b'"') => steps.push(self.key()?),
            Some(c) if is_ident_start(c) => steps.push(self.key()?),
            // `..` and `.?` are outside the subset.
            Some(b'.' | b'?') => return None,
            _ => {}
        }
        if !steps.is_empty() {
            ends.push(self.at);
        }
        loop {
            match self.rest().bytes().next() {
                Some(b'.') => {
                    self.at += 1;
                    steps.push(self.key()?);
                }
                Some(b'[') => steps.push(self.bracket()?),
                Some(b'?') => return None,
                _ => return Some(Expr::Path(steps, start, ends)),
            }
            ends.push(self.at);
        }
    }

    /// A string literal without interpolation; its escapes are JSON's.
    fn string(&mut self) -> Option<String> {
        let bytes = self.rest().as_bytes();
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if bytes.get(i + 1) == Some(&b'(') => return None,
                b'\\' => i += 2,
                b'"' => {
                    let literal = &self.rest()[..=i];
                    let s = serde_json::from_str(literal).ok()?;
                    self.at += i + 1;
                    return Some(s);
                }
                _ => i += 1,
            }
        }
        None
    }

    fn number(&mut self) -> Option<Value> {
        let len = self
            .rest()
            .bytes()
            .take_while(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
            .count();
        let n: serde_json::Number = self.rest()[..len].parse().ok()?;
        // Integers only as i64, floats only as finite f64: jaq reads the rest its own way.
        if !(n.is_i64() || n.is_f64()) {
            return None;
        }
        self.at += len;
        Some(Value::Number(n))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{Input, JqProgram};

    const DIRECT: &[&str] = &[
        ".",
        ".a",
        ".a.b",
        ".a.b.c",
        ".\"a b\"",
        ".[\"a\"]",
        ".a[0]",
        ".a[-1]",
        ".a.list[1]",
        ".a == \"x\"",
        ".a != \"x\"",
        ".n == 1",
        ".n == 1.0",
        ".n != 2.5",
        ".a == null",
        ".t == true",
        ".c == false",
        ".f != null",
        ".n == \"1\"",
        ".a | startswith(\"jira:\")",
        ".a | endswith(\"_created\")",
        ".a | startswith(\"jira:\") | not",
        ".a.b // .a // \"none\"",
        ".a // .b or .t",
        ".t and .f or .n",
        ".t or .f and .f",
        "(.t or .f) and .f",
        ".a == \"x\" and .n == 1",
        ".a.b == .c",
        ".list == .list",
        ".obj == .obj",
        "not",
        "\"lit\"",
        "42",
        "true",
        "null",
        ".webhookEvent | startswith(\"jira:issue_\")",
        ".issue.key // .project.key",
    ];

    const JAQ_ONLY: &[&str] = &[
        ".a?",
        "..",
        ".a | test(\"x\")",
        ".a, .b",
        ".a < .b",
        ".n + 1",
        "\"\\(.a)\"",
        ".a # comment",
        "-1",
        ".a.and",
        "if .t then 1 else 2 end",
        ".a | startswith(.b)",
    ];

    fn inputs() -> Vec<serde_json::Value> {
        vec![
            json!(null),
            json!(true),
            json!(7),
            json!("jira:issue_created"),
            json!([1, 2]),
            json!({}),
            json!({"a": "x", "n": 1, "t": true, "f": false, "c": null}),
            json!({"a": "jira:issue_created", "n": 1.0, "t": false, "f": true}),
            json!({"a": {"b": "deep", "list": [1, "two", null]}, "c": "deep", "n": 2.5}),
            json!({"a": {"b": null}, "b": 0, "t": null, "n": 9_223_372_036_854_775_807_i64}),
            json!({"a": [3, 4, 5], "list": [1, {"x": 1}], "obj": {"k": [1]}, "n": 18_446_744_073_709_551_615_u64}),
            json!({"a b": 1, "webhookEvent": "jira:issue_updated", "issue": {"key": "P-1"}}),
            json!({"webhookEvent": 5, "project": {"key": "P"}, "a": 12}),
        ]
    }

    /// The direct evaluator answers exactly what jaq answers, errors included.
    #[test]
    fn direct_programs_agree_with_jaq_on_every_input() {
        for code in DIRECT {
            let program = JqProgram::compile(code).unwrap();
            assert!(program.is_direct(), "`{code}` should run directly");
            for input in inputs() {
                let direct = program
                    .first_json(&Input::new(&input))
                    .map(|o| o.map(std::borrow::Cow::into_owned));
                let engine = program.first(&input);
                assert_eq!(direct, engine, "`{code}` on {input}");
            }
        }
    }

    #[test]
    fn a_null_path_names_the_step_that_found_nothing() {
        let input = json!({"fields": {"status": null, "tags": ["a"], "name": "x"}});
        let origin = |code: &str| {
            let range = super::parse(code).unwrap().null_origin(&input)?;
            Some(code[range].to_owned())
        };
        assert_eq!(
            origin(".fields.nope.deeper").as_deref(),
            Some(".fields.nope")
        );
        assert_eq!(
            origin(".fields.status.name").as_deref(),
            Some(".fields.status")
        );
        assert_eq!(
            origin(" .fields.tags[3]").as_deref(),
            Some(".fields.tags[3]")
        );
        assert_eq!(origin(".missing").as_deref(), Some(".missing"));
        assert_eq!(
            origin(r#".fields["name"].x"#).as_deref(),
            Some(r#".fields["name"].x"#)
        );
        assert_eq!(origin(".fields.name"), None);
        assert_eq!(origin(".fields.nope // \"d\""), None);
    }

    #[test]
    fn programs_outside_the_subset_run_on_jaq() {
        for code in JAQ_ONLY {
            let program = JqProgram::compile(code).unwrap();
            assert!(!program.is_direct(), "`{code}` is outside the subset");
            let input = json!({"a": "x", "b": "x", "t": true, "n": 1});
            assert_eq!(
                program
                    .first_json(&Input::new(&input))
                    .map(|o| o.map(std::borrow::Cow::into_owned)),
                program.first(&input),
                "`{code}`"
            );
        }
    }

    #[test]
    fn the_input_is_converted_only_when_a_program_needs_it() {
        let input = json!({"a": "x"});
        let input = Input::new(&input);
        let direct = JqProgram::compile(".a == \"x\"").unwrap();
        assert_eq!(
            direct.first_json(&input).unwrap().as_deref(),
            Some(&json!(true))
        );
        assert!(input.val.get().is_none());
        let engine = JqProgram::compile(".a | test(\"x\")").unwrap();
        assert_eq!(
            engine.first_json(&input).unwrap().as_deref(),
            Some(&json!(true))
        );
        assert!(input.val.get().is_some());
    }
}
