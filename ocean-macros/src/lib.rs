//! Procedural macros of ocean-rs. Use them through `ocean-runtime`, which re-exports and documents
//! them: `#[ocean_runtime::webhook_processor]`, `ocean_runtime::kinds!`, `ocean_runtime::main!`.
//!
//! Each macro parses its input into a typed model, validates it (collecting every problem, each
//! spanned on the offending token), and only then generates code. On failure the user's item is
//! emitted unchanged next to the errors, so one mistake does not cascade into others.

use proc_macro::TokenStream;

mod diag;
mod jq_check;
mod kinds;
mod main_macro;
mod processor;

/// Where generated code finds the runtime unless a `crate = "..."` key says otherwise.
fn default_runtime_path() -> syn::Path {
    syn::parse_quote!(::ocean_runtime)
}

fn debug_print(name: &str, tokens: &proc_macro2::TokenStream) {
    if std::env::var_os("OCEAN_MACROS_DEBUG").is_some_and(|v| v != "0") {
        eprintln!("--- ocean-macros: {name} expansion ---\n{tokens}");
    }
}

/// Turns an `async fn` into a registered webhook processor. Documented in `ocean_runtime`.
#[proc_macro_attribute]
pub fn webhook_processor(args: TokenStream, item: TokenStream) -> TokenStream {
    let out = processor::expand(args.into(), item.into());
    debug_print("webhook_processor", &out);
    out.into()
}

/// Declares the crate's mapping kinds. Documented in `ocean_runtime`.
#[proc_macro]
pub fn kinds(input: TokenStream) -> TokenStream {
    let out = kinds::expand(input.into());
    debug_print("kinds", &out);
    out.into()
}

/// Generates an integration's `fn main`. Documented in `ocean_runtime`.
#[proc_macro]
pub fn main(input: TokenStream) -> TokenStream {
    let out = main_macro::expand(input.into());
    debug_print("main", &out);
    out.into()
}

/// Reports a kind missing from `kinds!`; called by the checker `kinds!` generates.
#[doc(hidden)]
#[proc_macro]
pub fn __unknown_kind(input: TokenStream) -> TokenStream {
    kinds::unknown(input.into()).into()
}
