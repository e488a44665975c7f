//! `main!()`: the integration binary's `fn main`.

use std::path::PathBuf;

use proc_macro2::TokenStream;
use quote::quote;

/// Where a crate keeps its default mapping, as in Ocean.
const DEFAULT_MAPPING: &str = ".port/resources/port-app-config.yml";

/// Expands `main!()`.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    if !input.is_empty() {
        return syn::Error::new_spanned(
            input,
            "`main!` takes no arguments: write `ocean_runtime::main!();`",
        )
        .into_compile_error();
    }
    let mapping = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(|dir| PathBuf::from(dir).join(DEFAULT_MAPPING))
        .filter(|p| p.is_file())
        .and_then(|p| p.to_str().map(str::to_owned));
    let default_mapping = match mapping {
        Some(path) => quote!(::core::option::Option::Some(::core::include_str!(#path))),
        None => quote!(::core::option::Option::None),
    };
    quote! {
        fn main() -> ::std::process::ExitCode {
            ::ocean_runtime::__private::run_main(::ocean_runtime::__private::IntegrationInfo {
                name: ::core::env!("CARGO_PKG_NAME"),
                version: ::core::env!("CARGO_PKG_VERSION"),
                default_mapping: #default_mapping,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_refused() {
        assert!(
            expand(quote!(state = x))
                .to_string()
                .contains("takes no arguments")
        );
        assert!(expand(TokenStream::new()).to_string().contains("run_main"));
    }
}
