//! `main!()` / `main!(state = path::to_fn)`: the integration binary's `fn main`.

use std::path::PathBuf;

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Ident, Token};

use crate::diag::Diag;

/// Where a crate keeps its default mapping, as in Ocean.
const DEFAULT_MAPPING: &str = ".port/resources/port-app-config.yml";
/// Where a crate keeps Ocean's integration spec.
const SPEC: &str = ".port/spec.yaml";
/// Where a crate keeps its default Port resources, as in Ocean.
const RESOURCES: &str = ".port/resources";
/// The JSON files of that folder that a first start creates in Port, in Ocean's order.
const RESOURCE_FILES: [&str; 4] = [
    "blueprints.json",
    "actions.json",
    "scorecards.json",
    "pages.json",
];

/// `&[(file name, include_str!(file))]` for the crate's default Port resources that exist; a
/// compile error at the `main!` call for one that is not JSON.
fn default_resources(crate_dir: Option<PathBuf>) -> Result<TokenStream, syn::Error> {
    let mut entries = Vec::new();
    for name in RESOURCE_FILES {
        let Some(path) = crate_dir
            .as_ref()
            .map(|dir| dir.join(RESOURCES).join(name))
            .filter(|p| p.is_file())
        else {
            continue;
        };
        let refuse = |why: String| {
            syn::Error::new(
                proc_macro2::Span::call_site(),
                format!("{}: {why}", path.display()),
            )
        };
        let text = std::fs::read_to_string(&path).map_err(|e| refuse(e.to_string()))?;
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
            return Err(refuse(format!(
                "not valid JSON ({e}); fix it, or remove it to create nothing from it"
            )));
        }
        let path = path
            .to_str()
            .ok_or_else(|| refuse("the path is not UTF-8".to_owned()))?;
        entries.push(quote!((#name, ::core::include_str!(#path))));
    }
    Ok(quote!(&[#(#entries),*]))
}

mod kw {
    syn::custom_keyword!(state);
}

/// What `main!(...)` was given.
#[derive(Default)]
struct Args {
    /// `state = path::to_fn`.
    state: Option<syn::Path>,
    /// `crate = "path"`: where the runtime is, for a facade that re-exports it.
    krate: Option<syn::Path>,
}

fn parse(input: ParseStream<'_>, diag: &mut Diag) -> syn::Result<Args> {
    let mut args = Args::default();
    while !input.is_empty() {
        if input.peek(kw::state) {
            let key = input.parse::<kw::state>()?;
            input.parse::<Token![=]>()?;
            match input.parse::<syn::Expr>()? {
                syn::Expr::Path(p) if p.qself.is_none() => {
                    if args.state.is_some() {
                        diag.at(key, "`state` is set twice; remove one");
                    }
                    args.state = Some(p.path);
                }
                other => diag.at(
                    &other,
                    "`state` takes the path of a fn that builds the state, e.g. `state = JiraClient::from_config`",
                ),
            }
        } else if input.peek(Token![crate]) {
            let key = input.parse::<Token![crate]>()?;
            input.parse::<Token![=]>()?;
            let lit = input.parse::<syn::LitStr>()?;
            match lit.parse::<syn::Path>() {
                Ok(path) if args.krate.is_none() => args.krate = Some(path),
                Ok(_) => diag.at(key, "`crate` is set twice; remove one"),
                Err(e) => diag.at(
                    &lit,
                    format!("`crate` is not a path ({e}); e.g. `crate = \"my_facade::ocean\"`"),
                ),
            }
        } else {
            let key = Ident::parse_any(input)?;
            diag.at(
                &key,
                format!("unknown key `{key}`; `main!` takes: state, crate"),
            );
            if input.parse::<Option<Token![=]>>()?.is_some() {
                input.parse::<syn::Expr>()?;
            }
        }
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(args)
}

/// The error, with a `main` stub that keeps rustc from adding "`main` function not found" to it.
fn with_main_stub(e: syn::Error) -> TokenStream {
    let mut out = e.into_compile_error();
    out.extend(quote!(
        fn main() {}
    ));
    out
}

/// `Some(include_str!(file))` when the crate has `file` (relative to its folder), else `None`.
fn include_if_present(crate_dir: Option<&PathBuf>, file: &str) -> TokenStream {
    match crate_dir
        .map(|dir| dir.join(file))
        .filter(|p| p.is_file())
        .and_then(|p| p.to_str().map(str::to_owned))
    {
        Some(path) => quote!(::core::option::Option::Some(::core::include_str!(#path))),
        None => quote!(::core::option::Option::None),
    }
}

/// Expands `main!(...)`.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let mut diag = Diag::default();
    let args = match (|i: ParseStream<'_>| parse(i, &mut diag)).parse2(input) {
        Ok(args) => args,
        Err(e) => return with_main_stub(diag.fail(e)),
    };
    if let Err(e) = diag.finish(()) {
        return with_main_stub(e);
    }
    let Args { state, krate } = args;
    let krate = krate.unwrap_or_else(crate::default_runtime_path);
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let default_mapping = include_if_present(crate_dir.as_ref(), DEFAULT_MAPPING);
    let spec = include_if_present(crate_dir.as_ref(), SPEC);
    let default_resources = match default_resources(crate_dir) {
        Ok(tokens) => tokens,
        Err(e) => return with_main_stub(e),
    };
    let rt = quote!(#krate::__private);
    let state_arg = match state {
        None => quote!(::core::option::Option::None),
        // `state_init!` keeps the user's path tokens, so a fn of the wrong shape is reported there.
        Some(path) => quote!(::core::option::Option::Some(
            #rt::state_init!(#path)
        )),
    };
    quote! {
        #rt::global_allocator!();

        fn main() -> ::std::process::ExitCode {
            #rt::run_main(
                #rt::IntegrationInfo {
                    name: ::core::env!("CARGO_PKG_NAME"),
                    version: ::core::env!("CARGO_PKG_VERSION"),
                    default_mapping: #default_mapping,
                    default_resources: #default_resources,
                    spec: #spec,
                },
                #state_arg,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_resources_are_compiled_in_once_they_parse() {
        let dir = std::env::temp_dir().join(format!("ocean-macros-res-{}", std::process::id()));
        let resources = dir.join(".port/resources");
        std::fs::create_dir_all(&resources).unwrap();
        assert_eq!(
            default_resources(Some(dir.clone())).unwrap().to_string(),
            "& []"
        );
        std::fs::write(resources.join("blueprints.json"), "[]").unwrap();
        std::fs::write(resources.join("pages.json"), "[{\"identifier\": ").unwrap();
        let refused = default_resources(Some(dir.clone()))
            .unwrap_err()
            .to_string();
        assert!(refused.contains("pages.json: not valid JSON"), "{refused}");
        std::fs::write(resources.join("pages.json"), "[]").unwrap();
        let included = default_resources(Some(dir.clone())).unwrap().to_string();
        assert!(
            included.contains("\"blueprints.json\"") && included.contains("\"pages.json\""),
            "{included}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn state_fn_is_passed_to_the_runtime() {
        let out = expand(quote!(state = JiraClient::from_config)).to_string();
        assert!(
            out.contains(
                "Some (:: ocean_runtime :: __private :: state_init ! (JiraClient :: from_config))"
            ),
            "{out}"
        );
        let plain = expand(TokenStream::new()).to_string();
        assert!(plain.contains("run_main"), "{plain}");
        assert!(!plain.contains("state_init"), "{plain}");
    }

    #[test]
    fn a_facade_names_the_runtime_with_crate() {
        let out = expand(quote!(crate = "my_facade::ocean", state = S::new)).to_string();
        assert!(!out.contains("ocean_runtime"), "{out}");
        for expected in [
            "my_facade :: ocean :: __private :: global_allocator ! ()",
            "my_facade :: ocean :: __private :: run_main",
            "my_facade :: ocean :: __private :: state_init ! (S :: new)",
        ] {
            assert!(out.contains(expected), "missing {expected} in {out}");
        }
        let out = expand(quote!(crate = "1x")).to_string();
        assert!(out.contains("`crate` is not a path"), "{out}");
    }

    #[test]
    fn unknown_keys_and_non_paths_are_refused() {
        let out = expand(quote!(port = 3)).to_string();
        assert!(
            out.contains("unknown key `port`; `main!` takes: state, crate"),
            "{out}"
        );
        let out = expand(quote!(state = || 3)).to_string();
        assert!(out.contains("`state` takes the path of a fn"), "{out}");
    }
}
