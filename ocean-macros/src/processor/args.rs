//! Tokens → a typed model of the attribute, every value keeping its span.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Ident, ItemFn, LitStr, Token, bracketed};

use crate::diag::Diag;

/// The attribute's keys.
pub(super) const KEYS: &[&str] = &["path", "kinds", "matches", "name"];

/// The `kinds = [...]` value.
pub(super) struct KindsArg {
    pub(super) key: Ident,
    pub(super) list: Vec<LitStr>,
}

/// The attribute and the fn it is on, before validation.
pub(super) struct Args {
    pub(super) path: Option<LitStr>,
    pub(super) kinds: Option<KindsArg>,
    pub(super) matches: Option<LitStr>,
    pub(super) name: Option<LitStr>,
    pub(super) func: ItemFn,
    /// Problems found while parsing that do not stop the parse (unknown and repeated keys).
    pub(super) diag: Diag,
}

fn set<T>(slot: &mut Option<T>, value: T, key: &Ident, diag: &mut Diag) {
    if slot.is_some() {
        diag.at(key, format!("`{key}` is set twice; remove one"));
    } else {
        *slot = Some(value);
    }
}

fn parse_args(input: ParseStream<'_>, args: &mut Args) -> syn::Result<()> {
    while !input.is_empty() {
        let key = Ident::parse_any(input)?;
        input.parse::<Token![=]>()?;
        match key.to_string().as_str() {
            "path" => set(&mut args.path, input.parse()?, &key, &mut args.diag),
            "matches" => set(&mut args.matches, input.parse()?, &key, &mut args.diag),
            "name" => set(&mut args.name, input.parse()?, &key, &mut args.diag),
            "kinds" => {
                let content;
                bracketed!(content in input);
                let list =
                    content.parse_terminated(<LitStr as syn::parse::Parse>::parse, Token![,])?;
                let value = KindsArg {
                    key: key.clone(),
                    list: list.into_iter().collect(),
                };
                set(&mut args.kinds, value, &key, &mut args.diag);
            }
            other => {
                args.diag.at(
                    &key,
                    format!(
                        "unknown key `{other}`; expected one of: {}",
                        KEYS.join(", ")
                    ),
                );
                input.parse::<syn::Expr>()?;
            }
        }
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

/// Parses the attribute arguments and the annotated fn.
pub(super) fn parse(args: TokenStream, item: TokenStream) -> syn::Result<Args> {
    let func: ItemFn = syn::parse2(item)?;
    let mut out = Args {
        path: None,
        kinds: None,
        matches: None,
        name: None,
        func,
        diag: Diag::default(),
    };
    (|input: ParseStream<'_>| parse_args(input, &mut out)).parse2(args)?;
    Ok(out)
}

/// Where to report a missing key: the attribute as a whole.
pub(super) fn call_site() -> Span {
    Span::call_site()
}
