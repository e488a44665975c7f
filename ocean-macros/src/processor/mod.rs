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
            let mut out = without_receiver(item);
            out.extend(err.into_compile_error());
            out
        }
    }
}

/// The item as written, minus a `self` parameter (already reported), so that rustc does not
/// report it a second time.
fn without_receiver(item: TokenStream) -> TokenStream {
    match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(mut func) if matches!(func.sig.inputs.first(), Some(syn::FnArg::Receiver(_))) => {
            func.sig.inputs = func
                .sig
                .inputs
                .into_iter()
                .filter(|a| !matches!(a, syn::FnArg::Receiver(_)))
                .collect();
            quote::ToTokens::into_token_stream(func)
        }
        _ => item,
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
        assert!(
            out.contains(
                "kinds_are_declared_with_ocean_runtime_kinds_at_the_crate_root ! (\"issue\" ; :: ocean_runtime :: __private)"
            ),
            "{out}"
        );
        assert!(
            out.contains("Registration :: new (\"/webhook\" , \"f\""),
            "{out}"
        );
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
    fn arguments_by_value_or_mut_are_explained() {
        let out = errors(
            quote!(path = "/a", kinds = ["x"]),
            quote!(
                async fn f(
                    a: WebhookEvent,
                    b: &mut JobContext<'_>,
                ) -> Result<RawResults, ProcessError> {
                    todo!()
                }
            ),
        );
        assert!(out.contains("take `WebhookEvent` by reference"), "{out}");
        assert!(out.contains("not `&mut`"), "{out}");
    }

    #[test]
    fn every_option_is_expanded() {
        let out = expand(
            quote!(
                path = "/a",
                kinds = ["x"],
                group = ".key",
                latest_only = true,
                validate = ".key != null",
                authenticate = token(header = "X-Gitlab-Token", secret = "gitlab_token"),
                retry(max = 5, initial = "500ms", max_delay = "10s", base = 3),
                timeout = "1m30s",
                should_process = checks::wanted,
                matching_kinds = checks::kinds,
                before = hooks::before,
                after = hooks::after,
                on_error = hooks::on_error,
                on_cancel = hooks::on_cancel,
            ),
            quote!(
                async fn f(e: &WebhookEvent, s: Selector<S>) -> Result<RawResults, ProcessError> {
                    todo!()
                }
            ),
        )
        .to_string();
        assert!(!out.contains("compile_error"), "{out}");
        for expected in [
            ". group (\".key\")",
            ". latest_only ()",
            ". validate (\".key != null\")",
            "Authenticate :: Token { header : \"X-Gitlab-Token\" , secret : \"gitlab_token\" }",
            "max_retries : 5u32",
            "initial : :: ocean_runtime :: __private :: Duration :: from_millis (500u64)",
            "base : 3f64",
            "from_millis (90000u64)",
            "checks :: wanted (event)",
            "hooks :: on_cancel (event) . await",
            "Probe :: < Selector < S > > :: new ()) . requirement ()",
        ] {
            assert!(out.contains(expected), "missing {expected} in {out}");
        }
    }

    #[test]
    fn option_mistakes_are_reported_together() {
        let out = errors(
            quote!(
                path = "/a",
                kinds = ["x"],
                timeout = "5 sec",
                retry(max = 5, initial = "1m", max_delay = "1s", tries = 3),
                authenticate = gihtub(),
                group = ".a |",
                validate = ".a | nosuch",
                on_error = 3,
                kinds_for = x,
            ),
            item(),
        );
        for expected in [
            "bad duration `5 sec`",
            "`initial` is longer than `max_delay`",
            "unknown `retry` key `tries`",
            "unknown verifier `gihtub` (did you mean `github`?)",
            "jq error in `group`",
            "jq error in `validate`",
            "`on_error` takes the path of a fn",
            "unknown key `kinds_for`",
        ] {
            assert!(out.contains(expected), "missing {expected} in {out}");
        }
    }

    #[test]
    fn token_verifier_needs_its_header_and_secret_is_a_field_name() {
        let out = errors(
            quote!(
                path = "/a",
                kinds = ["x"],
                authenticate = token(secret = "s3cr3t!")
            ),
            item(),
        );
        assert!(out.contains("never the secret itself"), "{out}");
        let out = errors(
            quote!(path = "/a", kinds = ["x"], authenticate = token()),
            item(),
        );
        assert!(out.contains("`token` needs the header"), "{out}");
    }

    #[test]
    fn an_initial_delay_past_the_default_cap_is_refused() {
        let out = errors(
            quote!(path = "/a", kinds = ["x"], retry(initial = "1m")),
            item(),
        );
        assert!(
            out.contains("`initial` is longer than the default `max_delay` of 30 s"),
            "{out}"
        );
        let out = expand(
            quote!(
                path = "/a",
                kinds = ["x"],
                retry(initial = "1m", max_delay = "2m")
            ),
            item(),
        )
        .to_string();
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn a_facade_names_the_runtime_with_crate() {
        let out = expand(
            quote!(
                crate = "my_facade::ocean",
                path = "/a",
                kinds = ["x"],
                retry(max = 2, initial = "1s")
            ),
            item(),
        )
        .to_string();
        assert!(!out.contains("compile_error"), "{out}");
        assert!(!out.contains("ocean_runtime ::"), "{out}");
        assert!(
            out.contains("my_facade :: ocean :: __private :: Registration :: new"),
            "{out}"
        );
        assert!(
            out.contains("(\"x\" ; my_facade :: ocean :: __private)"),
            "{out}"
        );
        let out = errors(
            quote!(crate = "not a path", path = "/a", kinds = ["x"]),
            item(),
        );
        assert!(out.contains("`crate` is not a path"), "{out}");
        let out = errors(
            quote!(crate = my_facade, path = "/a", kinds = ["x"]),
            item(),
        );
        assert!(out.contains("`crate` takes the runtime's path"), "{out}");
    }

    #[test]
    fn the_duplicate_marker_is_one_to_one() {
        let marker = |path: &str, name: &str| {
            expand(quote!(path = #path, kinds = ["x"], name = #name), item())
                .to_string()
                .split_whitespace()
                .find(|w| w.starts_with("duplicate_processor_name_"))
                .map(str::to_owned)
        };
        assert_eq!(
            marker("/webhook", "issues").as_deref(),
            Some("duplicate_processor_name_issues_on_path__2fwebhook")
        );
        // `_` is escaped too, so `/a_b` and `/a/b` differ.
        assert_ne!(marker("/a_b", "n"), marker("/a/b", "n"));
        assert_ne!(marker("/a", "n_x"), marker("/a", "n/x"));
    }

    #[test]
    fn problems_before_a_syntax_error_are_reported_with_it() {
        let out = errors(quote!(colour = "red", path = "/a" kinds = ["x"]), item());
        assert!(out.contains("unknown key `colour`"), "{out}");
        assert!(out.contains("expected `,`"), "{out}");
    }

    #[test]
    fn on_error_the_fn_is_kept() {
        let out = expand(quote!(kinds = ["x"]), item()).to_string();
        assert!(out.starts_with("async fn f"), "{out}");
    }
}
