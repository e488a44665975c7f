//! Meaning checks on the parsed attribute; every problem is collected.

use std::collections::HashSet;

use syn::{FnArg, ItemFn, Lit, LitStr, ReturnType, Type};

use super::args::{Args, AuthArg, Hooks, RetryArg, Validate};
use crate::diag::Diag;
use crate::jq_check;
use ocean_jq::spec::{
    PathProblem, STANDARD_WEBHOOKS_TOLERANCE_MS, Verifier, duration_millis, path_problem,
    retry as retry_spec,
};

/// A built-in verifier with its resolved arguments.
pub(super) enum Auth {
    GitHub { secret: String },
    Jira { secret: String },
    Token { header: String, secret: String },
    StandardWebhooks { secret: String, tolerance_ms: u64 },
    Fn(syn::Path),
}

/// `retry(...)` resolved; `None` fields keep Ocean's defaults.
pub(super) struct Retry {
    pub(super) max: Option<u32>,
    pub(super) initial_ms: Option<u64>,
    pub(super) max_delay_ms: Option<u64>,
    pub(super) base: Option<f64>,
}

/// A valid processor, ready to expand.
pub(super) struct Model {
    pub(super) path: LitStr,
    pub(super) kinds: Vec<LitStr>,
    pub(super) matches: Option<LitStr>,
    pub(super) name: LitStr,
    pub(super) group: Option<LitStr>,
    pub(super) latest_only: bool,
    pub(super) validate: Option<Validate>,
    pub(super) auth: Option<Auth>,
    pub(super) retry: Option<Retry>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) hooks: Hooks,
    pub(super) func: ItemFn,
    /// The runtime's path: `crate = "..."`, else `::ocean_runtime`.
    pub(super) krate: syn::Path,
}

/// Whether `name` is a built-in verifier (the table is `ocean_jq::spec::Verifier`, which the
/// runtime reads too).
pub(super) fn is_builtin_verifier(name: &str) -> bool {
    Verifier::from_name(name).is_some()
}

/// Default integration config field holding a verifier's secret.
const DEFAULT_SECRET: &str = "webhook_secret";

fn check_path(path: &LitStr, diag: &mut Diag) {
    let value = path.value();
    match path_problem(&value) {
        None => {}
        Some(PathProblem::NotAbsolute) => diag.at(
            path,
            format!(
                "`path` {}, e.g. \"/{}\"",
                PathProblem::NotAbsolute.message(),
                value.trim_start_matches('/')
            ),
        ),
        Some(problem @ (PathProblem::EmptySegment | PathProblem::BadCharacter)) => {
            diag.at(path, format!("`path` {}", problem.message()));
        }
    }
}

fn duration(lit: &LitStr, diag: &mut Diag) -> Option<u64> {
    match duration_millis(&lit.value()) {
        Ok(ms) => Some(ms),
        Err(e) => {
            diag.at(lit, e);
            None
        }
    }
}

/// The last segment of a type path (`WebhookEvent` for `ocean_runtime::event::WebhookEvent`).
fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

fn check_signature(func: &ItemFn, diag: &mut Diag) {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        diag.at(
            sig.fn_token,
            "a webhook processor must be an `async fn`; add `async` before `fn`",
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        diag.at(
            &sig.generics,
            "a webhook processor cannot be generic; use concrete types (`Selector<MyType>`, `State<MyClient>`)",
        );
    }
    if let Some(v) = &sig.variadic {
        diag.at(v, "a webhook processor cannot be variadic");
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => diag.at(
                r,
                "a webhook processor cannot take `self`; write a free `async fn` and reach shared data through `State<T>`",
            ),
            FnArg::Typed(arg) => match &*arg.ty {
                Type::Reference(r) if r.mutability.is_some() => diag.at(
                    &arg.ty,
                    "webhook processor arguments are shared, not `&mut`; write `&T`",
                ),
                ty => {
                    if let Some(name) = last_segment(ty)
                        && matches!(
                            name.as_str(),
                            "WebhookEvent" | "ResourceConfig" | "JobContext"
                        )
                    {
                        diag.at(
                            ty,
                            format!("take `{name}` by reference: write `&{name}`"),
                        );
                    }
                }
            },
        }
    }
    if let ReturnType::Default = sig.output {
        diag.at(
            &sig.ident,
            "a webhook processor must return `Result<RawResults, E>` (with `E: Into<ProcessError>`); \
             add `-> Result<RawResults, ProcessError>`",
        );
    }
}

fn check_retry(retry: RetryArg, diag: &mut Diag) -> Retry {
    let max = retry.max.and_then(|m| match m.base10_parse::<u32>() {
        Ok(n) if n <= retry_spec::MAX_LIMIT => Some(n),
        Ok(_) => {
            diag.at(
                &m,
                format!("`max` is at most {} retries", retry_spec::MAX_LIMIT),
            );
            None
        }
        Err(e) => {
            diag.at(&m, format!("`max` must be a whole number: {e}"));
            None
        }
    });
    let initial_ms = retry.initial.as_ref().and_then(|l| duration(l, diag));
    let max_delay_ms = retry.max_delay.as_ref().and_then(|l| duration(l, diag));
    // Against the default `max_delay` too: a longer `initial` would be cut to it unseen.
    if let (Some(i), Some(lit)) = (initial_ms, &retry.initial)
        && i > max_delay_ms.unwrap_or(retry_spec::MAX_DELAY_MS)
    {
        let limit = match max_delay_ms {
            Some(_) => "`max_delay`".to_owned(),
            None => format!(
                "the default `max_delay` of {} s; raise `max_delay` too",
                retry_spec::MAX_DELAY_MS / 1000
            ),
        };
        diag.at(lit, format!("`initial` is longer than {limit}"));
    }
    let base = retry.base.and_then(|lit| {
        let value = match &lit {
            Lit::Int(i) => i.base10_parse::<f64>().ok(),
            Lit::Float(f) => f.base10_parse::<f64>().ok(),
            _ => None,
        };
        match value {
            Some(b) if retry_spec::BASE_RANGE.contains(&b) => Some(b),
            _ => {
                diag.at(
                    &lit,
                    format!(
                        "`base` is a number from {} to {}, e.g. `base = 2`",
                        retry_spec::BASE_RANGE.start(),
                        retry_spec::BASE_RANGE.end()
                    ),
                );
                None
            }
        }
    });
    Retry {
        max,
        initial_ms,
        max_delay_ms,
        base,
    }
}

fn field_name_ok(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_auth(auth: AuthArg, diag: &mut Diag) -> Option<Auth> {
    let (name, args) = match auth {
        AuthArg::Fn(path) => return Some(Auth::Fn(path)),
        AuthArg::Builtin { name, args } => (name, args),
    };
    let verifier = name.to_string();
    let Some(builtin) = Verifier::from_name(&verifier) else {
        let names: Vec<&str> = Verifier::ALL.iter().map(|v| v.name()).collect();
        let hint = crate::kinds::closest(&verifier, names.iter().copied())
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        diag.at(
            &name,
            format!(
                "unknown verifier `{verifier}`{hint}; built-in verifiers: {}; or give the path of your own fn",
                names.join(", ")
            ),
        );
        return None;
    };
    let mut secret = None;
    let mut header = None;
    let mut tolerance_ms = None;
    let mut ok = true;
    for (key, lit) in &args {
        let k = key.to_string();
        let allowed = builtin.args();
        if !allowed.contains(&k.as_str()) {
            diag.at(
                key,
                format!(
                    "`{verifier}` takes: {}",
                    allowed
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            ok = false;
            continue;
        }
        let Lit::Str(s) = lit else {
            diag.at(lit, format!("`{k}` takes a string literal"));
            ok = false;
            continue;
        };
        match k.as_str() {
            "secret" => {
                if field_name_ok(&s.value()) {
                    secret = Some(s.value());
                } else {
                    diag.at(
                        s,
                        "`secret` names an integration config field (letters, digits, `_`), e.g. \
                         \"webhook_secret\" for OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET; never the secret itself",
                    );
                    ok = false;
                }
            }
            "header" => {
                let h = s.value();
                if h.is_empty() || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    diag.at(
                        s,
                        "`header` is an HTTP header name, e.g. \"X-Gitlab-Token\"",
                    );
                    ok = false;
                } else {
                    header = Some(h);
                }
            }
            _ => match duration(s, diag) {
                Some(ms) => tolerance_ms = Some(ms),
                None => ok = false,
            },
        }
    }
    let secret = secret.unwrap_or_else(|| DEFAULT_SECRET.to_owned());
    match builtin {
        Verifier::GitHub => ok.then_some(Auth::GitHub { secret }),
        Verifier::Jira => ok.then_some(Auth::Jira { secret }),
        Verifier::Token => match header {
            Some(header) => ok.then_some(Auth::Token { header, secret }),
            None => {
                diag.at(
                    &name,
                    "`token` needs the header that carries the token, e.g. `token(header = \"X-Gitlab-Token\")`",
                );
                None
            }
        },
        Verifier::StandardWebhooks => ok.then_some(Auth::StandardWebhooks {
            secret,
            tolerance_ms: tolerance_ms.unwrap_or(STANDARD_WEBHOOKS_TOLERANCE_MS),
        }),
    }
}

/// Checks the attribute and the fn.
pub(super) fn check(args: Args) -> syn::Result<Model> {
    let Args {
        path,
        kinds,
        matches,
        name,
        group,
        latest_only,
        validate,
        authenticate,
        retry,
        timeout,
        hooks,
        func,
        krate,
        mut diag,
    } = args;
    if let Some(l) = &latest_only
        && l.value
        && group.is_none()
    {
        diag.at(
            l,
            "`latest_only` needs a `group`: it keeps only the latest waiting event of each group, e.g. `group = \".issue.key\"`",
        );
    }
    let latest_only = latest_only.is_some_and(|l| l.value);
    let call_site = super::args::call_site();
    match &path {
        Some(p) => check_path(p, &mut diag),
        None => diag.at_span(
            call_site,
            "missing `path = \"/...\"`: the path under /integration this processor listens on",
        ),
    }
    match &kinds {
        None => diag.at_span(
            call_site,
            "missing `kinds = [\"...\"]`: the mapping kinds this processor produces",
        ),
        Some(k) if k.list.is_empty() => {
            diag.at(&k.key, "`kinds` is empty; list at least one kind");
        }
        Some(k) => {
            let mut seen = HashSet::new();
            for kind in &k.list {
                if kind.value().is_empty() {
                    diag.at(kind, "a kind cannot be empty");
                } else if !seen.insert(kind.value()) {
                    diag.at(kind, format!("kind `{}` is listed twice", kind.value()));
                }
            }
        }
    }
    if let Some(m) = &matches {
        jq_check::check("matches", m, &mut diag);
    }
    if let Some(g) = &group {
        jq_check::check("group", g, &mut diag);
    }
    if let Some(Validate::Jq(v)) = &validate {
        jq_check::check("validate", v, &mut diag);
    }
    if let Some(n) = &name
        && n.value().trim().is_empty()
    {
        diag.at(n, "`name` cannot be empty");
    }
    let timeout_ms = timeout.as_ref().and_then(|t| duration(t, &mut diag));
    if let (Some(0), Some(t)) = (timeout_ms, &timeout) {
        diag.at(t, "`timeout` must be longer than zero");
    }
    let retry = retry.map(|r| check_retry(r, &mut diag));
    let auth = authenticate.and_then(|a| check_auth(a, &mut diag));
    check_signature(&func, &mut diag);
    let name =
        name.unwrap_or_else(|| LitStr::new(&func.sig.ident.to_string(), func.sig.ident.span()));
    diag.finish(())?;
    match (path, kinds) {
        (Some(path), Some(kinds)) => Ok(Model {
            path,
            kinds: kinds.list,
            matches,
            name,
            group,
            latest_only,
            validate,
            auth,
            retry,
            timeout_ms,
            hooks,
            func,
            krate: krate.unwrap_or_else(crate::default_runtime_path),
        }),
        _ => Err(syn::Error::new(call_site, "missing `path` or `kinds`")),
    }
}
