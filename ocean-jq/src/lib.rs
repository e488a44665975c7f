//! jq programs for ocean-rs, backed by the jaq engine.
//!
//! A [`JqProgram`] is parsed and compiled once and then run on many inputs. Compile errors carry the
//! byte range, line and column of the offending text, so the same messages serve the compile-time
//! checks of `ocean-macros` and the mapping loader of `ocean-runtime`.
//!
//! ```
//! use ocean_jq::JqProgram;
//! use serde_json::json;
//!
//! let program = JqProgram::compile(r#".webhookEvent | startswith("jira:issue_")"#)?;
//! let out = program.first(&json!({"webhookEvent": "jira:issue_created"}))?;
//! assert_eq!(out, Some(json!(true)));
//!
//! let err = JqProgram::compile(".a | nosuchfn(1)").unwrap_err();
//! assert_eq!(err.to_string(), "undefined filter `nosuchfn` at line 1, column 6");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::ops::Range;

use jaq_core::data::JustLut;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, load, unwrap_valr};

mod convert;
mod fast;
pub mod spec;

pub use convert::{from_val, to_val};
/// jaq's value type: what a [`JqProgram`] consumes and yields.
pub use jaq_json::Val;

/// A jq program compiled once and run on many inputs.
///
/// The compiled filter is `Send + Sync`, so one program can be shared by every worker.
pub struct JqProgram {
    code: String,
    filter: jaq_core::Filter<JustLut<Val>>,
    /// The same program for the direct JSON evaluator, when it is in that subset.
    fast: Option<fast::Expr>,
}

/// A JSON input for [`JqProgram::first_json`], converted to a jaq value only when a program needs
/// one, and then once for every program run on it.
#[derive(Debug)]
pub struct Input<'a> {
    json: &'a serde_json::Value,
    val: std::sync::OnceLock<Val>,
}

impl<'a> Input<'a> {
    /// Wraps a JSON value; nothing is converted yet.
    #[must_use]
    pub fn new(json: &'a serde_json::Value) -> Self {
        Self {
            json,
            val: std::sync::OnceLock::new(),
        }
    }

    /// The JSON value.
    #[must_use]
    pub fn json(&self) -> &'a serde_json::Value {
        self.json
    }

    /// The value as jaq's, converted on first use.
    pub fn val(&self) -> &Val {
        self.val.get_or_init(|| to_val(self.json))
    }
}

impl fmt::Debug for JqProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JqProgram")
            .field("code", &self.code)
            .finish()
    }
}

/// A jq program that does not parse or does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JqError {
    /// What went wrong, e.g. "expected closing parenthesis" or "undefined filter `nosuchfn`".
    pub message: String,
    /// Byte range of the offending text in the program.
    pub span: Range<usize>,
    /// 1-based line of the start of `span`.
    pub line: usize,
    /// 1-based column (in characters) of the start of `span`.
    pub column: usize,
}

impl fmt::Display for JqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, column {}",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for JqError {}

impl JqError {
    fn new(code: &str, message: String, span: Range<usize>) -> Self {
        let before = code.get(..span.start).unwrap_or(code);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self {
            message,
            span,
            line,
            column,
        }
    }

    /// The program's line that holds the error, with a caret line under the offending text.
    #[must_use]
    pub fn caret(&self, code: &str) -> String {
        let text = code.lines().nth(self.line - 1).unwrap_or("");
        let width = code
            .get(self.span.clone())
            .map_or(1, |s| s.chars().count().max(1));
        format!(
            "{text}\n{}{}",
            " ".repeat(self.column - 1),
            "^".repeat(width)
        )
    }
}

/// Every problem found in one jq program, in source order (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JqErrors(pub Vec<JqError>);

impl JqErrors {
    /// The first problem, which is the one to show when only one fits.
    #[must_use]
    pub fn first(&self) -> Option<&JqError> {
        self.0.first()
    }
}

impl fmt::Display for JqErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for JqErrors {}

/// A jq program failed while running on an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JqRunError(pub String);

impl fmt::Display for JqRunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JqRunError {}

/// Byte range of `part` inside `whole`, or an empty range at the end when `part` is not a slice of it.
fn offset_of(whole: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize);
    match start {
        Some(start) if start + part.len() <= whole.len() => start..start + part.len(),
        _ => whole.len()..whole.len(),
    }
}

fn lex_expectation(expect: &load::lex::Expect<&str>) -> &'static str {
    use load::lex::Expect;
    match expect {
        Expect::Delim(d) => match *d {
            "(" => "closing parenthesis",
            "[" => "closing bracket",
            "{" => "closing brace",
            "\"" => "closing quote",
            _ => "closing delimiter",
        },
        other => other.as_str(),
    }
}

fn load_errors(code: &str, errs: load::Errors<&str, ()>) -> Vec<JqError> {
    let mut out = Vec::new();
    for (_file, err) in errs {
        match err {
            load::Error::Io(items) => {
                for (path, msg) in items {
                    out.push(JqError::new(
                        code,
                        format!("cannot load module `{path}`: {msg}"),
                        offset_of(code, path),
                    ));
                }
            }
            load::Error::Lex(items) => {
                for (expect, found) in items {
                    let msg = format!("expected {}", lex_expectation(&expect));
                    out.push(JqError::new(code, msg, offset_of(code, found)));
                }
            }
            load::Error::Parse(items) => {
                for (expect, found) in items {
                    let msg = if found.is_empty() {
                        format!("expected {}, found end of program", expect.as_str())
                    } else {
                        format!("expected {}, found `{found}`", expect.as_str())
                    };
                    out.push(JqError::new(code, msg, offset_of(code, found)));
                }
            }
        }
    }
    out
}

impl JqProgram {
    /// Parses and compiles `code` with jq's standard library.
    ///
    /// # Errors
    /// Every parse or compile problem found.
    pub fn compile(code: &str) -> Result<Self, JqErrors> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(&arena, File { code, path: () })
            .map_err(|errs| JqErrors(load_errors(code, errs)))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errs| {
                errs.into_iter()
                    .flat_map(|(_file, undefined)| undefined)
                    .map(|(name, what)| {
                        JqError::new(
                            code,
                            format!("undefined {} `{name}`", what.as_str()),
                            offset_of(code, name),
                        )
                    })
                    .collect::<Vec<_>>()
            });
        let filter = filter.map_err(JqErrors)?;
        Ok(Self {
            code: code.to_owned(),
            filter,
            fast: fast::parse(code),
        })
    }

    /// The program's source text.
    #[must_use]
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Runs the program on a jaq value and returns every output.
    ///
    /// # Errors
    /// The first runtime error the program raises.
    pub fn run_val(&self, input: Val) -> Result<Vec<Val>, JqRunError> {
        let ctx = Ctx::<JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        self.filter
            .id
            .run((ctx, input))
            .map(unwrap_valr)
            .map(|r| r.map_err(|e| JqRunError(e.to_string())))
            .collect()
    }

    /// Runs the program on a jaq value and returns its first output, if any.
    ///
    /// # Errors
    /// A runtime error raised before the first output.
    pub fn first_val(&self, input: Val) -> Result<Option<Val>, JqRunError> {
        let ctx = Ctx::<JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        self.filter
            .id
            .run((ctx, input))
            .map(unwrap_valr)
            .next()
            .transpose()
            .map_err(|e| JqRunError(e.to_string()))
    }

    /// Whether the program runs on JSON directly (see [`JqProgram::first_json`]).
    #[must_use]
    pub fn is_direct(&self) -> bool {
        self.fast.is_some()
    }

    /// Runs the program on `input` and returns its first output as JSON, if any.
    ///
    /// Programs in a small subset of jq (paths, literals, `|`, `//`, `and`, `or`, `==`, `!=`,
    /// `not`, `startswith`, `endswith`) run on the JSON directly, without converting the input;
    /// the jaq engine still decides every input on which jq would raise an error. Other programs
    /// run on the input's jaq value, converted once per [`Input`].
    ///
    /// # Errors
    /// A runtime error raised before the first output.
    pub fn first_json<'a>(
        &self,
        input: &Input<'a>,
    ) -> Result<Option<std::borrow::Cow<'a, serde_json::Value>>, JqRunError> {
        if let Some(out) = self.fast.as_ref().and_then(|f| f.eval(input.json).ok()) {
            return Ok(Some(out));
        }
        let out = self.first_val(input.val().clone())?;
        Ok(out.as_ref().map(|v| std::borrow::Cow::Owned(from_val(v))))
    }

    /// Where a program that is a plain path (`.fields.status.name`) stopped finding anything on
    /// `input`: the range of the program's text up to and including the first step that found
    /// `null` or nothing (`.fields.status` when `status` is missing). `None` for other programs.
    #[must_use]
    pub fn null_origin(&self, input: &serde_json::Value) -> Option<Range<usize>> {
        self.fast.as_ref()?.null_origin(input)
    }

    /// Runs the program on a JSON value and returns its first output as JSON, if any.
    ///
    /// # Errors
    /// A runtime error raised before the first output.
    pub fn first(
        &self,
        input: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, JqRunError> {
        Ok(self.first_val(to_val(input))?.as_ref().map(from_val))
    }
}

/// Whether a jq output counts as true: anything but `null` and `false`, as in jq.
#[must_use]
pub fn truthy(val: &Val) -> bool {
    !matches!(val, Val::Null | Val::Bool(false))
}

/// [`truthy`] for a JSON value.
#[must_use]
pub fn json_truthy(value: &serde_json::Value) -> bool {
    !matches!(
        value,
        serde_json::Value::Null | serde_json::Value::Bool(false)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(code: &str) -> JqError {
        JqProgram::compile(code).unwrap_err().0.remove(0)
    }

    #[test]
    fn unclosed_call_points_at_the_end() {
        let e = error(r#".a | startswith("x""#);
        assert_eq!(e.message, "expected closing parenthesis");
        assert_eq!((e.line, e.column), (1, 20));
    }

    #[test]
    fn unknown_function_points_at_its_name() {
        let e = error(".a | nosuchfn(1)");
        assert_eq!(e.message, "undefined filter `nosuchfn`");
        assert_eq!(e.span, 5..13);
        assert_eq!(
            e.caret(".a | nosuchfn(1)"),
            ".a | nosuchfn(1)\n     ^^^^^^^^"
        );
    }

    #[test]
    fn errors_on_a_later_line_count_lines_and_columns() {
        let e = error(".a |\n  nope");
        assert_eq!((e.line, e.column), (2, 3));
    }

    #[test]
    fn parse_error_names_the_found_token() {
        let e = error(".a | | .b");
        assert!(e.message.starts_with("expected "), "{}", e.message);
        assert!(e.message.contains("`|`"), "{}", e.message);
    }

    #[test]
    fn runs_and_converts_back_to_json() {
        let p = JqProgram::compile(
            "{id: (.n | tostring), xs: [.xs[] * 2], f: 1.5, big: 12345678901234567890}",
        )
        .unwrap();
        let out = p.first(&json!({"n": 7, "xs": [1, 2]})).unwrap().unwrap();
        assert_eq!(out["id"], json!("7"));
        assert_eq!(out["xs"], json!([2, 4]));
        assert_eq!(out["f"], json!(1.5));
        assert_eq!(out["big"], json!(12_345_678_901_234_567_890_u64));
    }

    #[test]
    fn runtime_error_is_reported() {
        let p = JqProgram::compile(".a + 1").unwrap();
        assert!(p.first(&json!({"a": "x"})).is_err());
    }

    #[test]
    fn truthiness_follows_jq() {
        assert!(!truthy(&to_val(&json!(null))));
        assert!(!truthy(&to_val(&json!(false))));
        assert!(truthy(&to_val(&json!(0))));
        assert!(truthy(&to_val(&json!(""))));
    }
}
