//! Tokens → a typed model of the attribute, every value keeping its span.
//!
//! Parsing is lenient: a value of the wrong shape is reported and parsing goes on, so that every
//! mistake in one attribute is reported in one build.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, ItemFn, Lit, LitStr, Token, parenthesized};

use crate::diag::Diag;

/// The attribute's keys.
pub(super) const KEYS: &[&str] = &[
    "path",
    "kinds",
    "matches",
    "name",
    "group",
    "latest_only",
    "validate",
    "authenticate",
    "retry",
    "timeout",
    "should_process",
    "matching_kinds",
    "before",
    "after",
    "on_error",
    "on_cancel",
];

/// The keys of `retry(...)`.
pub(super) const RETRY_KEYS: &[&str] = &["max", "initial", "max_delay", "base"];

/// The `kinds = [...]` value.
pub(super) struct KindsArg {
    pub(super) key: Ident,
    pub(super) list: Vec<LitStr>,
}

/// `validate = "<jq>"` or `validate = path::to_fn`.
pub(super) enum Validate {
    Jq(LitStr),
    Fn(syn::Path),
}

/// `authenticate = github(secret = "...")` or `authenticate = path::to_fn`.
pub(super) enum AuthArg {
    Builtin {
        name: Ident,
        args: Vec<(Ident, Lit)>,
    },
    Fn(syn::Path),
}

/// `retry(max = 5, initial = "500ms", max_delay = "10s", base = 2)`.
#[derive(Default)]
pub(super) struct RetryArg {
    pub(super) max: Option<syn::LitInt>,
    pub(super) initial: Option<LitStr>,
    pub(super) max_delay: Option<LitStr>,
    pub(super) base: Option<Lit>,
}

/// The fns given for hooks and custom logic.
#[derive(Default)]
pub(super) struct Hooks {
    pub(super) should_process: Option<syn::Path>,
    pub(super) matching_kinds: Option<syn::Path>,
    pub(super) before: Option<syn::Path>,
    pub(super) after: Option<syn::Path>,
    pub(super) on_error: Option<syn::Path>,
    pub(super) on_cancel: Option<syn::Path>,
}

/// The attribute and the fn it is on, before validation.
pub(super) struct Args {
    pub(super) path: Option<LitStr>,
    pub(super) kinds: Option<KindsArg>,
    pub(super) matches: Option<LitStr>,
    pub(super) name: Option<LitStr>,
    pub(super) group: Option<LitStr>,
    pub(super) latest_only: Option<syn::LitBool>,
    pub(super) validate: Option<Validate>,
    pub(super) authenticate: Option<AuthArg>,
    pub(super) retry: Option<RetryArg>,
    pub(super) timeout: Option<LitStr>,
    pub(super) hooks: Hooks,
    pub(super) func: ItemFn,
    /// Problems found while parsing that do not stop the parse.
    pub(super) diag: Diag,
}

fn set<T>(slot: &mut Option<T>, value: Option<T>, key: &Ident, diag: &mut Diag) {
    let Some(value) = value else { return };
    if slot.is_some() {
        diag.at(key, format!("`{key}` is set twice; remove one"));
    } else {
        *slot = Some(value);
    }
}

fn lit_str(value: Expr, key: &Ident, diag: &mut Diag, example: &str) -> Option<LitStr> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s),
        other => {
            diag.at(
                &other,
                format!("`{key}` takes a string literal, e.g. `{key} = {example}`"),
            );
            None
        }
    }
}

fn fn_path(value: Expr, key: &Ident, diag: &mut Diag) -> Option<syn::Path> {
    match value {
        Expr::Path(p) if p.qself.is_none() => Some(p.path),
        other => {
            diag.at(
                &other,
                format!("`{key}` takes the path of a fn, e.g. `{key} = my_module::{key}`"),
            );
            None
        }
    }
}

fn kinds(value: Expr, key: &Ident, diag: &mut Diag) -> Option<KindsArg> {
    let Expr::Array(array) = value else {
        diag.at(
            &value,
            "`kinds` takes a list of string literals, e.g. `kinds = [\"issue\"]`",
        );
        return None;
    };
    let mut list = Vec::new();
    for elem in array.elems {
        match elem {
            Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) => list.push(s),
            other => diag.at(&other, "a kind is a string literal, e.g. \"issue\""),
        }
    }
    Some(KindsArg {
        key: key.clone(),
        list,
    })
}

fn validate(value: Expr, diag: &mut Diag) -> Option<Validate> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(Validate::Jq(s)),
        Expr::Path(p) if p.qself.is_none() => Some(Validate::Fn(p.path)),
        other => {
            diag.at(
                &other,
                "`validate` takes a jq predicate (`validate = \".issue.key != null\"`) or the path of a fn \
                 (`validate = my_module::check`)",
            );
            None
        }
    }
}

fn authenticate(value: Expr, diag: &mut Diag) -> Option<AuthArg> {
    match value {
        // A bare built-in name is that verifier with its defaults (`authenticate = github`); a user
        // fn of the same name is written as a path (`self::github`).
        Expr::Path(p)
            if p.qself.is_none()
                && p.path
                    .get_ident()
                    .is_some_and(|i| super::validate::is_builtin_verifier(&i.to_string())) =>
        {
            p.path.get_ident().cloned().map(|name| AuthArg::Builtin {
                name,
                args: Vec::new(),
            })
        }
        Expr::Path(p) if p.qself.is_none() => Some(AuthArg::Fn(p.path)),
        Expr::Call(call) => {
            let Expr::Path(func) = &*call.func else {
                diag.at(&call.func, "expected a verifier name, e.g. `github(...)`");
                return None;
            };
            let Some(name) = func.path.get_ident().cloned() else {
                diag.at(&call.func, "expected a verifier name, e.g. `github(...)`");
                return None;
            };
            let mut args = Vec::new();
            for arg in call.args {
                match arg {
                    Expr::Assign(assign) => match (*assign.left, *assign.right) {
                        (Expr::Path(k), Expr::Lit(v)) if k.path.get_ident().is_some() => {
                            if let Some(k) = k.path.get_ident() {
                                args.push((k.clone(), v.lit));
                            }
                        }
                        (left, right) => {
                            diag.at(quote::quote!(#left = #right), "expected `key = \"value\"`")
                        }
                    },
                    other => diag.at(&other, "expected `key = \"value\"`"),
                }
            }
            Some(AuthArg::Builtin { name, args })
        }
        other => {
            diag.at(
                &other,
                "`authenticate` takes a built-in verifier (`github(secret = \"webhook_secret\")`) or the path \
                 of a fn over the event (`authenticate = my_module::verify`)",
            );
            None
        }
    }
}

fn retry(input: ParseStream<'_>, diag: &mut Diag) -> syn::Result<RetryArg> {
    let content;
    parenthesized!(content in input);
    let pairs = Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated(&content)?;
    let mut out = RetryArg::default();
    for pair in pairs {
        let Some(key) = pair.path.get_ident().cloned() else {
            diag.at(&pair.path, "expected one of: max, initial, max_delay, base");
            continue;
        };
        let lit = match pair.value {
            Expr::Lit(l) => Some(l.lit),
            other => {
                diag.at(&other, format!("`{key}` takes a literal"));
                None
            }
        };
        let Some(lit) = lit else { continue };
        match key.to_string().as_str() {
            "max" => match lit {
                Lit::Int(i) => set(&mut out.max, Some(i), &key, diag),
                other => diag.at(&other, "`max` is a whole number of retries, e.g. `max = 5`"),
            },
            "initial" | "max_delay" => match lit {
                Lit::Str(s) => {
                    let slot = if key == "initial" {
                        &mut out.initial
                    } else {
                        &mut out.max_delay
                    };
                    set(slot, Some(s), &key, diag);
                }
                other => diag.at(
                    &other,
                    format!("`{key}` is a duration string, e.g. `{key} = \"500ms\"`"),
                ),
            },
            "base" => match lit {
                Lit::Int(_) | Lit::Float(_) => set(&mut out.base, Some(lit), &key, diag),
                other => diag.at(&other, "`base` is a number, e.g. `base = 2`"),
            },
            other => diag.at(
                &key,
                format!(
                    "unknown `retry` key `{other}`; expected one of: {}",
                    RETRY_KEYS.join(", ")
                ),
            ),
        }
    }
    Ok(out)
}

fn parse_args(input: ParseStream<'_>, args: &mut Args) -> syn::Result<()> {
    while !input.is_empty() {
        let key = Ident::parse_any(input)?;
        let name = key.to_string();
        if name == "retry" {
            if input.peek(syn::token::Paren) {
                let value = retry(input, &mut args.diag)?;
                set(&mut args.retry, Some(value), &key, &mut args.diag);
            } else {
                args.diag.at(
                    &key,
                    "write `retry(max = 3, initial = \"1s\", max_delay = \"30s\", base = 2)`",
                );
                if input.parse::<Option<Token![=]>>()?.is_some() {
                    input.parse::<Expr>()?;
                }
            }
        } else {
            input.parse::<Token![=]>()?;
            let value: Expr = input.parse()?;
            let d = &mut args.diag;
            match name.as_str() {
                "path" => {
                    let v = lit_str(value, &key, d, "\"/webhook\"");
                    set(&mut args.path, v, &key, d);
                }
                "matches" => {
                    let v = lit_str(value, &key, d, "\".action == \\\"opened\\\"\"");
                    set(&mut args.matches, v, &key, d);
                }
                "name" => {
                    let v = lit_str(value, &key, d, "\"issues\"");
                    set(&mut args.name, v, &key, d);
                }
                "group" => {
                    let v = lit_str(value, &key, d, "\".issue.key\"");
                    set(&mut args.group, v, &key, d);
                }
                "latest_only" => {
                    let v = match value {
                        Expr::Lit(syn::ExprLit {
                            lit: Lit::Bool(b), ..
                        }) => Some(b),
                        other => {
                            d.at(&other, "`latest_only` takes `true` or `false`");
                            None
                        }
                    };
                    set(&mut args.latest_only, v, &key, d);
                }
                "timeout" => {
                    let v = lit_str(value, &key, d, "\"30s\"");
                    set(&mut args.timeout, v, &key, d);
                }
                "kinds" => {
                    let v = kinds(value, &key, d);
                    set(&mut args.kinds, v, &key, d);
                }
                "validate" => {
                    let v = validate(value, d);
                    set(&mut args.validate, v, &key, d);
                }
                "authenticate" => {
                    let v = authenticate(value, d);
                    set(&mut args.authenticate, v, &key, d);
                }
                "should_process" | "matching_kinds" | "before" | "after" | "on_error"
                | "on_cancel" => {
                    let v = fn_path(value, &key, d);
                    let hooks = &mut args.hooks;
                    let slot = match name.as_str() {
                        "should_process" => &mut hooks.should_process,
                        "matching_kinds" => &mut hooks.matching_kinds,
                        "before" => &mut hooks.before,
                        "after" => &mut hooks.after,
                        "on_error" => &mut hooks.on_error,
                        _ => &mut hooks.on_cancel,
                    };
                    set(slot, v, &key, d);
                }
                other => {
                    let hint = crate::kinds::closest(other, KEYS.iter().copied())
                        .map(|k| format!(" (did you mean `{k}`?)"))
                        .unwrap_or_default();
                    d.at(
                        &key,
                        format!(
                            "unknown key `{other}`{hint}; expected one of: {}",
                            KEYS.join(", ")
                        ),
                    );
                }
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
pub(super) fn parse(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<Args> {
    let func: ItemFn = syn::parse2(item)?;
    let mut out = Args {
        path: None,
        kinds: None,
        matches: None,
        name: None,
        group: None,
        latest_only: None,
        validate: None,
        authenticate: None,
        retry: None,
        timeout: None,
        hooks: Hooks::default(),
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
