//! `#[webhook_processor(...)]`: parse → validate → expand.

mod args;
mod expand;
mod validate;

use proc_macro2::TokenStream;

/// Expands the attribute; on any problem, emits the fn unchanged plus every error.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    match args::parse(args, item.clone()).and_then(validate::check) {
        Ok(model) => expand::tokens(&model),
        Err(err) => {
            let mut out = item;
            out.extend(err.into_compile_error());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn errors(args: TokenStream, item: TokenStream) -> String {
        let out = expand(args, item).to_string();
        assert!(out.contains("compile_error"), "expected errors in {out}");
        out
    }

    const FN: &str =
        "async fn f(event: &WebhookEvent) -> Result<RawResults, ProcessError> { todo!() }";

    fn item() -> TokenStream {
        FN.parse().unwrap()
    }

    #[test]
    fn valid_attribute_registers_the_processor() {
        let out = expand(
            quote!(path = "/webhook", kinds = ["issue"], matches = ".a"),
            item(),
        )
        .to_string();
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("inventory :: submit"), "{out}");
        assert!(out.contains("__ocean_kinds_check ! (\"issue\")"), "{out}");
        assert!(out.contains("name : \"f\""), "{out}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let out = errors(
            quote!(
                path = "webhook",
                kinds = [],
                matches = ".a |",
                color = "red"
            ),
            item(),
        );
        assert!(out.contains("unknown key `color`"), "{out}");
        assert!(out.contains("must start with `/`"), "{out}");
        assert!(out.contains("`kinds` is empty"), "{out}");
        assert!(out.contains("jq error in `matches`"), "{out}");
    }

    #[test]
    fn missing_keys_and_repeats() {
        let out = errors(quote!(matches = ".a", matches = ".b"), item());
        assert!(out.contains("`matches` is set twice"), "{out}");
        assert!(out.contains("missing `path"), "{out}");
        assert!(out.contains("missing `kinds"), "{out}");
    }

    #[test]
    fn duplicate_kind_and_empty_segment() {
        let out = errors(quote!(path = "/a//b", kinds = ["x", "x"]), item());
        assert!(out.contains("empty segment"), "{out}");
        assert!(out.contains("kind `x` is listed twice"), "{out}");
    }

    #[test]
    fn signature_problems() {
        let out = errors(
            quote!(path = "/a", kinds = ["x"]),
            quote!(
                fn f<T>(self) {}
            ),
        );
        assert!(out.contains("must be an `async fn`"), "{out}");
        assert!(out.contains("cannot be generic"), "{out}");
        assert!(out.contains("cannot take `self`"), "{out}");
        assert!(out.contains("must return"), "{out}");
    }

    #[test]
    fn unsupported_argument_is_named() {
        let out = errors(
            quote!(path = "/a", kinds = ["x"]),
            quote!(
                async fn f(a: String) -> Result<RawResults, ProcessError> {
                    todo!()
                }
            ),
        );
        assert!(out.contains("unsupported argument"), "{out}");
    }

    #[test]
    fn on_error_the_fn_is_kept() {
        let out = expand(quote!(kinds = ["x"]), item()).to_string();
        assert!(out.starts_with("async fn f"), "{out}");
    }
}
