//! `kinds![...]` and the check it makes possible: every `kinds = [...]` of a processor must name a
//! declared kind.
//!
//! `kinds!` generates a crate-local `macro_rules!` with one arm per declared kind and a last arm that
//! calls [`unknown`], which reports the undeclared kind at its own span with a "did you mean".

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{LitStr, Token};

use crate::diag::Diag;

fn parse_list(input: TokenStream) -> syn::Result<Vec<LitStr>> {
    let list = Punctuated::<LitStr, Token![,]>::parse_terminated.parse2(input)?;
    Ok(list.into_iter().collect())
}

/// Expands `kinds!["a", "b"]`.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let kinds = match parse_list(input) {
        Ok(k) => k,
        Err(e) => return e.into_compile_error(),
    };
    let mut diag = Diag::default();
    if kinds.is_empty() {
        diag.at_span(
            proc_macro2::Span::call_site(),
            "`kinds!` needs at least one kind, e.g. `kinds![\"issue\"]`",
        );
    }
    let mut seen = HashSet::new();
    for k in &kinds {
        if k.value().is_empty() {
            diag.at(k, "a kind cannot be empty");
        } else if !seen.insert(k.value()) {
            diag.at(k, format!("kind `{}` is declared twice", k.value()));
        }
    }
    if let Err(e) = diag.finish(()) {
        return e.into_compile_error();
    }
    let plain: Vec<LitStr> = kinds
        .iter()
        .map(|k| LitStr::new(&k.value(), k.span()))
        .collect();
    quote! {
        #[doc(hidden)]
        macro_rules! kinds_are_declared_with_ocean_runtime_kinds_at_the_crate_root {
            #( (#plain; $($rt:tt)*) => {}; )*
            // `$rt` is the runtime's `__private` path, as the processor's attribute knows it.
            ($other:literal; $($rt:tt)*) => {
                $($rt)*::unknown_kind!($other; #(#plain),*);
            };
        }
        #[doc(hidden)]
        #[allow(unused_imports)]
        pub(crate) use kinds_are_declared_with_ocean_runtime_kinds_at_the_crate_root;
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a typo of it.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let word = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&word, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The declared kind closest to `kind`, if it is close enough to be a typo.
pub(crate) fn suggestion<'a>(kind: &str, declared: &'a [String]) -> Option<&'a str> {
    closest(kind, declared.iter().map(String::as_str))
}

/// The message for an undeclared kind.
pub(crate) fn message(kind: &str, declared: &[String]) -> String {
    let list = declared
        .iter()
        .map(|d| format!("`{d}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match suggestion(kind, declared) {
        Some(s) => format!(
            "kind `{kind}` is not declared in `ocean_runtime::kinds![...]`; did you mean `{s}`? (declared: {list})"
        ),
        None => format!(
            "kind `{kind}` is not declared in `ocean_runtime::kinds![...]` (declared: {list}); add it there if it is new"
        ),
    }
}

/// Expands `unknown_kind!("kind"; "declared", ...)` into a compile error at the kind.
pub(crate) fn unknown(input: TokenStream) -> TokenStream {
    let parsed = (|input: ParseStream<'_>| {
        let kind: LitStr = input.parse()?;
        input.parse::<Token![;]>()?;
        let declared = Punctuated::<LitStr, Token![,]>::parse_terminated(input)?;
        Ok((
            kind,
            declared.into_iter().map(|d| d.value()).collect::<Vec<_>>(),
        ))
    })
    .parse2(input);
    match parsed {
        Ok((kind, declared)) => {
            syn::Error::new(kind.span(), message(&kind.value(), &declared)).into_compile_error()
        }
        Err(e) => e.into_compile_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Vec<String> {
        vec!["issue".into(), "project".into(), "pull-request".into()]
    }

    #[test]
    fn suggests_near_matches_only() {
        assert_eq!(suggestion("isue", &declared()), Some("issue"));
        assert_eq!(suggestion("Project", &declared()), Some("project"));
        assert_eq!(
            suggestion("pull_request", &declared()),
            Some("pull-request")
        );
        assert_eq!(suggestion("deployment", &declared()), None);
    }

    #[test]
    fn message_lists_declared_kinds() {
        let m = message("isue", &declared());
        assert!(m.contains("did you mean `issue`?"), "{m}");
        assert!(m.contains("`issue`, `project`, `pull-request`"), "{m}");
        assert!(message("zzz", &declared()).contains("add it there"));
    }

    #[test]
    fn kinds_rejects_repeats_and_empty_lists() {
        assert!(
            expand(quote!("a", "a"))
                .to_string()
                .contains("declared twice")
        );
        assert!(expand(quote!()).to_string().contains("at least one kind"));
        assert!(expand(quote!("a", "b")).to_string().contains("macro_rules"));
    }

    #[test]
    fn unknown_reports_at_the_kind() {
        let out = unknown(quote!("isue"; "issue", "project")).to_string();
        assert!(
            out.contains("compile_error") && out.contains("did you mean `issue`"),
            "{out}"
        );
    }
}
