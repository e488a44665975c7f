//! Tokens → a typed model of the attribute, every value keeping its span.
//!
//! Parsing is lenient: a value of the wrong shape is reported and parsing goes on, so that every
//! mistake in one attribute is reported in one build.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Ident, ItemFn, Lit, LitStr, Token, parenthesized};

use crate::diag::Diag;

/// Declares the attribute's keys once: a `syn::custom_keyword!` for each, and [`Key`], whose
/// matches are exhaustive, so a new key is a compile error until it is parsed.
macro_rules! keys {
    ($kw_mod:ident: $Key:ident { $($kw:ident => $variant:ident),* $(,)? }) => {
        /// The keywords.
        mod $kw_mod {
            $(syn::custom_keyword!($kw);)*
        }

        /// A key.
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub(super) enum $Key {
            $($variant,)*
        }

        impl $Key {
            /// Every key, in the order the docs list them.
            pub(super) const ALL: &[Self] = &[$(Self::$variant),*];

            /// The key as written.
            pub(super) const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($kw),)*
                }
            }

            /// The key at the cursor with its span, or the unknown word there.
            fn parse(input: ParseStream<'_>) -> syn::Result<Result<(Self, Ident), Ident>> {
                $(
                    if input.peek($kw_mod::$kw) {
                        let k = input.parse::<$kw_mod::$kw>()?;
                        return Ok(Ok((Self::$variant, Ident::new(stringify!($kw), k.span))));
                    }
                )*
                Ident::parse_any(input).map(Err)
            }
        }
    };
}

keys! { kw: Key {
    path => Path,
    kinds => Kinds,
    matches => Matches,
    name => Name,
    group => Group,
    latest_only => LatestOnly,
    validate => Validate,
    authenticate => Authenticate,
    retry => Retry,
    timeout => Timeout,
    should_process => ShouldProcess,
    matching_kinds => MatchingKinds,
    before => Before,
    after => After,
    on_error => OnError,
    on_cancel => OnCancel,
} }

keys! { retry_kw: RetryKey {
    max => Max,
    initial => Initial,
    max_delay => MaxDelay,
    base => Base,
} }

/// Every key's name, `crate` last (it is a Rust keyword, parsed as one).
fn key_names() -> String {
    let mut names: Vec<&str> = Key::ALL.iter().map(|k| k.name()).collect();
    names.push("crate");
    names.join(", ")
}

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
    /// `crate = "path"`: where the runtime is, for a facade that re-exports it.
    pub(super) krate: Option<syn::Path>,
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
    let mut out = RetryArg::default();
    while !content.is_empty() {
        let key = RetryKey::parse(&content)?;
        content.parse::<Token![=]>()?;
        let value: Expr = content.parse()?;
        if !content.is_empty() {
            content.parse::<Token![,]>()?;
        }
        let (key, ident) = match key {
            Ok(known) => known,
            Err(other) => {
                let names: Vec<&str> = RetryKey::ALL.iter().map(|k| k.name()).collect();
                diag.at(
                    &other,
                    format!(
                        "unknown `retry` key `{other}`; expected one of: {}",
                        names.join(", ")
                    ),
                );
                continue;
            }
        };
        let Expr::Lit(syn::ExprLit { lit, .. }) = value else {
            diag.at(&value, format!("`{ident}` takes a literal"));
            continue;
        };
        match (key, lit) {
            (RetryKey::Max, Lit::Int(i)) => set(&mut out.max, Some(i), &ident, diag),
            (RetryKey::Max, other) => {
                diag.at(&other, "`max` is a whole number of retries, e.g. `max = 5`");
            }
            (RetryKey::Initial, Lit::Str(s)) => set(&mut out.initial, Some(s), &ident, diag),
            (RetryKey::MaxDelay, Lit::Str(s)) => set(&mut out.max_delay, Some(s), &ident, diag),
            (RetryKey::Initial | RetryKey::MaxDelay, other) => diag.at(
                &other,
                format!("`{ident}` is a duration string, e.g. `{ident} = \"500ms\"`"),
            ),
            (RetryKey::Base, lit @ (Lit::Int(_) | Lit::Float(_))) => {
                set(&mut out.base, Some(lit), &ident, diag);
            }
            (RetryKey::Base, other) => diag.at(&other, "`base` is a number, e.g. `base = 2`"),
        }
    }
    Ok(out)
}

/// `crate = "path"`: the runtime's path, checked to be one.
fn krate(value: Expr, diag: &mut Diag) -> Option<syn::Path> {
    let example = "e.g. `crate = \"my_facade::ocean\"`";
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => match s.parse::<syn::Path>() {
            Ok(path) => Some(path),
            Err(e) => {
                diag.at(&s, format!("`crate` is not a path ({e}); {example}"));
                None
            }
        },
        other => {
            diag.at(
                &other,
                format!("`crate` takes the runtime's path as a string literal, {example}"),
            );
            None
        }
    }
}

fn parse_args(input: ParseStream<'_>, args: &mut Args) -> syn::Result<()> {
    while !input.is_empty() {
        if input.peek(Token![crate]) {
            let key = input.parse::<Token![crate]>()?;
            input.parse::<Token![=]>()?;
            let value = krate(input.parse()?, &mut args.diag);
            if args.krate.is_some() {
                args.diag.at(key, "`crate` is set twice; remove one");
            } else {
                args.krate = value;
            }
        } else {
            match Key::parse(input)? {
                Ok((Key::Retry, key)) => retry_key(input, key, args)?,
                Ok((known, key)) => {
                    input.parse::<Token![=]>()?;
                    value(known, key, input.parse()?, args);
                }
                Err(other) => {
                    let word = other.to_string();
                    let hint = crate::kinds::closest(&word, Key::ALL.iter().map(|k| k.name()))
                        .map(|k| format!(" (did you mean `{k}`?)"))
                        .unwrap_or_default();
                    args.diag.at(
                        &other,
                        format!(
                            "unknown key `{word}`{hint}; expected one of: {}",
                            key_names()
                        ),
                    );
                    if input.parse::<Option<Token![=]>>()?.is_some() {
                        input.parse::<Expr>()?;
                    }
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

/// `retry(...)`, or the mistake of writing `retry = ...`.
fn retry_key(input: ParseStream<'_>, key: Ident, args: &mut Args) -> syn::Result<()> {
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
    Ok(())
}

/// A hook's fn path into its slot.
fn hook(slot: &mut Option<syn::Path>, value: Expr, key: &Ident, diag: &mut Diag) {
    let v = fn_path(value, key, diag);
    set(slot, v, key, diag);
}

/// Stores the value of a `key = value` pair, or reports why it cannot be.
fn value(known: Key, key: Ident, value: Expr, args: &mut Args) {
    let d = &mut args.diag;
    let hooks = &mut args.hooks;
    match known {
        Key::Path => {
            let v = lit_str(value, &key, d, "\"/webhook\"");
            set(&mut args.path, v, &key, d);
        }
        Key::Matches => {
            let v = lit_str(value, &key, d, "\".action == \\\"opened\\\"\"");
            set(&mut args.matches, v, &key, d);
        }
        Key::Name => {
            let v = lit_str(value, &key, d, "\"issues\"");
            set(&mut args.name, v, &key, d);
        }
        Key::Group => {
            let v = lit_str(value, &key, d, "\".issue.key\"");
            set(&mut args.group, v, &key, d);
        }
        Key::LatestOnly => {
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
        Key::Timeout => {
            let v = lit_str(value, &key, d, "\"30s\"");
            set(&mut args.timeout, v, &key, d);
        }
        Key::Kinds => {
            let v = kinds(value, &key, d);
            set(&mut args.kinds, v, &key, d);
        }
        Key::Validate => {
            let v = validate(value, d);
            set(&mut args.validate, v, &key, d);
        }
        Key::Authenticate => {
            let v = authenticate(value, d);
            set(&mut args.authenticate, v, &key, d);
        }
        // Parsed before a `=` is looked for; see `retry_key`.
        Key::Retry => d.at(&key, "write `retry(...)`"),
        Key::ShouldProcess => hook(&mut hooks.should_process, value, &key, d),
        Key::MatchingKinds => hook(&mut hooks.matching_kinds, value, &key, d),
        Key::Before => hook(&mut hooks.before, value, &key, d),
        Key::After => hook(&mut hooks.after, value, &key, d),
        Key::OnError => hook(&mut hooks.on_error, value, &key, d),
        Key::OnCancel => hook(&mut hooks.on_cancel, value, &key, d),
    }
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
        krate: None,
        diag: Diag::default(),
    };
    match (|input: ParseStream<'_>| parse_args(input, &mut out)).parse2(args) {
        Ok(()) => Ok(out),
        Err(e) => Err(out.diag.fail(e)),
    }
}

/// Where to report a missing key: the attribute as a whole.
pub(super) fn call_site() -> Span {
    Span::call_site()
}
