//! Compile-time checking of jq literals with the same jaq engine the runtime uses.

use syn::LitStr;

use crate::diag::Diag;

/// Parses and compiles `lit` as jq; reports every problem on the literal with its position inside
/// the string and a caret line (a literal's inner span cannot be pointed at on stable Rust).
pub(crate) fn check(key: &str, lit: &LitStr, diag: &mut Diag) {
    let code = lit.value();
    if let Err(errors) = ocean_jq::JqProgram::compile(&code) {
        for e in &errors.0 {
            let caret = e.caret(&code);
            diag.at(
                lit,
                format!(
                    "jq error in `{key}`: {e}\n  {}",
                    caret.replace('\n', "\n  ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(code: &str) -> Option<String> {
        let lit = LitStr::new(code, proc_macro2::Span::call_site());
        let mut diag = Diag::default();
        check("matches", &lit, &mut diag);
        diag.finish(()).err().map(|e| e.to_string())
    }

    #[test]
    fn valid_programs_pass() {
        assert_eq!(
            message(r#".webhookEvent | startswith("jira:issue_")"#),
            None
        );
    }

    #[test]
    fn syntax_error_has_column_and_caret() {
        let m = message(r#".a | startswith("x""#).unwrap();
        assert!(
            m.starts_with(
                "jq error in `matches`: expected closing parenthesis at line 1, column 20"
            ),
            "{m}"
        );
        assert!(
            m.contains("\n  .a | startswith(\"x\"\n                     ^"),
            "{m}"
        );
    }

    #[test]
    fn unknown_function_is_caught() {
        let m = message(".a | nosuchfn(1)").unwrap();
        assert!(
            m.contains("undefined filter `nosuchfn` at line 1, column 6"),
            "{m}"
        );
    }
}
