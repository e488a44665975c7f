//! A valid model → the processor type, its trait impl and its registration.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, LitStr};

use super::args::Validate;
use super::validate::{Auth, Model, Retry};

/// The runtime's private module, which is all that generated code names of the runtime.
fn rt(model: &Model) -> TokenStream {
    let krate = &model.krate;
    quote!(#krate::__private)
}

fn duration(rt: &TokenStream, ms: u64) -> TokenStream {
    quote!(#rt::Duration::from_millis(#ms))
}

/// The handler: each argument extracted by type, the fn called, its result converted.
fn handle(model: &Model) -> TokenStream {
    let rt = rt(model);
    let sig = &model.func.sig;
    let ident = &sig.ident;
    let mut names = Vec::new();
    let mut lets = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(arg) = input else { continue };
        let ty = &arg.ty;
        let name = format_ident!("__ocean_arg{i}");
        // Spanned on the argument's type: an unsupported type is reported there.
        lets.push(quote_spanned! {ty.span()=>
            let #name: #ty = match <#ty as #rt::FromJob<'_>>::from_job(job) {
                ::core::result::Result::Ok(v) => v,
                ::core::result::Result::Err(e) => return ::core::result::Result::Err(e),
            };
        });
        names.push(name);
    }
    let output_span = match &sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => ident.span(),
    };
    let call = quote_spanned! {output_span=>
        #rt::IntoResults::into_results(#ident(#(#names),*).await)
    };
    quote! {
        fn handle<'a>(
            &'a self,
            job: &'a #rt::JobContext<'a>,
        ) -> #rt::BoxFuture<'a, ::core::result::Result<#rt::RawResults, #rt::ProcessError>> {
            ::std::boxed::Box::pin(async move {
                #(#lets)*
                #call
            })
        }
    }
}

/// `fn requirements()`: what each argument type needs from the app.
fn requirements(model: &Model) -> TokenStream {
    let rt = rt(model);
    let pushes = model
        .func
        .sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(arg) => {
                let ty = &arg.ty;
                // A probe, not a bound: an unsupported type is reported once, by the extraction.
                Some(quote! {
                    out.extend((&&#rt::Probe::<#ty>::new()).requirement());
                })
            }
            FnArg::Receiver(_) => None,
        });
    quote! {
        #[allow(clippy::needless_borrow)]
        fn __ocean_requirements() -> ::std::vec::Vec<#rt::Requirement> {
            #[allow(unused_imports)]
            use #rt::{ProbeKnown as _, ProbeUnknown as _};
            #[allow(unused_mut)]
            let mut out = ::std::vec::Vec::new();
            #(#pushes)*
            out
        }
    }
}

fn retry_policy(rt: &TokenStream, retry: &Retry) -> TokenStream {
    let mut fields = Vec::new();
    if let Some(max) = retry.max {
        fields.push(quote!(max_retries: #max,));
    }
    if let Some(ms) = retry.initial_ms {
        let d = duration(rt, ms);
        fields.push(quote!(initial: #d,));
    }
    if let Some(ms) = retry.max_delay_ms {
        let d = duration(rt, ms);
        fields.push(quote!(max_delay: #d,));
    }
    if let Some(base) = retry.base {
        fields.push(quote!(base: #base,));
    }
    quote! {
        fn retry_policy(&self) -> #rt::RetryPolicy {
            #rt::RetryPolicy { #(#fields)* ..#rt::RetryPolicy::OCEAN }
        }
    }
}

/// The optional trait methods the attribute's keys fill in.
fn options(model: &Model) -> TokenStream {
    let rt = rt(model);
    let hooks = &model.hooks;
    let mut out = TokenStream::new();
    if let Some(f) = &hooks.should_process {
        out.extend(quote_spanned! {f.span()=>
            fn should_process(&self, event: &#rt::WebhookEvent) -> bool {
                #f(event)
            }
        });
    }
    if let Some(f) = &hooks.matching_kinds {
        out.extend(quote_spanned! {f.span()=>
            fn matching_kinds(&self, event: &#rt::WebhookEvent) -> ::core::option::Option<::std::vec::Vec<::std::string::String>> {
                ::core::option::Option::Some(
                    ::core::iter::IntoIterator::into_iter(#f(event))
                        .map(|k| ::std::string::ToString::to_string(&k))
                        .collect(),
                )
            }
        });
    }
    if let Some(Validate::Fn(f)) = &model.validate {
        out.extend(quote_spanned! {f.span()=>
            fn validate(&self, event: &#rt::WebhookEvent) -> ::core::result::Result<(), #rt::ProcessError> {
                ::core::result::Result::map_err(#f(event), ::core::convert::Into::into)
            }
        });
    }
    if let Some(retry) = &model.retry {
        out.extend(retry_policy(&rt, retry));
    }
    if let Some(ms) = model.timeout_ms {
        let d = duration(&rt, ms);
        out.extend(quote! {
            fn timeout(&self) -> ::core::option::Option<#rt::Duration> {
                ::core::option::Option::Some(#d)
            }
        });
    }
    if let Some(f) = &hooks.before {
        out.extend(quote_spanned! {f.span()=>
            fn before<'a>(&'a self, job: &'a #rt::JobContext<'a>) -> #rt::BoxFuture<'a, ()> {
                ::std::boxed::Box::pin(async move { #f(job).await })
            }
        });
    }
    if let Some(f) = &hooks.after {
        out.extend(quote_spanned! {f.span()=>
            fn after<'a>(&'a self, job: &'a #rt::JobContext<'a>, results: &'a #rt::RawResults) -> #rt::BoxFuture<'a, ()> {
                ::std::boxed::Box::pin(async move { #f(job, results).await })
            }
        });
    }
    if let Some(f) = &hooks.on_error {
        out.extend(quote_spanned! {f.span()=>
            fn on_error<'a>(&'a self, job: &'a #rt::JobContext<'a>, error: &'a #rt::ProcessError) -> #rt::BoxFuture<'a, ()> {
                ::std::boxed::Box::pin(async move { #f(job, error).await })
            }
        });
    }
    if let Some(f) = &hooks.on_cancel {
        out.extend(quote_spanned! {f.span()=>
            fn on_cancel<'a>(&'a self, event: &'a #rt::WebhookEvent) -> #rt::BoxFuture<'a, ()> {
                ::std::boxed::Box::pin(async move { #f(event).await })
            }
        });
    }
    out
}

/// The registration's builder calls for the options kept in the registration.
fn registration_options(model: &Model) -> (TokenStream, TokenStream) {
    let rt = rt(model);
    let mut calls = TokenStream::new();
    let mut items = TokenStream::new();
    if let Some(m) = &model.matches {
        calls.extend(quote!(.matches(#m)));
    }
    if let Some(g) = &model.group {
        calls.extend(quote!(.group(#g)));
    }
    if model.latest_only {
        calls.extend(quote!(.latest_only()));
    }
    if let Some(Validate::Jq(v)) = &model.validate {
        calls.extend(quote!(.validate(#v)));
    }
    let secret_lit = |s: &str| LitStr::new(s, Span::call_site());
    let auth = match &model.auth {
        None => None,
        Some(Auth::GitHub { secret }) => {
            let secret = secret_lit(secret);
            Some(quote!(#rt::Authenticate::GitHub { secret: #secret }))
        }
        Some(Auth::Jira { secret }) => {
            let secret = secret_lit(secret);
            Some(quote!(#rt::Authenticate::Jira { secret: #secret }))
        }
        Some(Auth::Token { header, secret }) => {
            let (header, secret) = (secret_lit(header), secret_lit(secret));
            Some(quote!(#rt::Authenticate::Token { header: #header, secret: #secret }))
        }
        Some(Auth::StandardWebhooks {
            secret,
            tolerance_ms,
        }) => {
            let secret = secret_lit(secret);
            let tolerance = duration(&rt, *tolerance_ms);
            Some(
                quote!(#rt::Authenticate::StandardWebhooks { secret: #secret, tolerance: #tolerance }),
            )
        }
        Some(Auth::Fn(f)) => {
            items.extend(quote_spanned! {f.span()=>
                fn __ocean_authenticate(
                    event: &#rt::WebhookEvent,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    #rt::AuthOutcome::into_auth(#f(event))
                }
            });
            Some(quote!(#rt::Authenticate::Custom(__ocean_authenticate)))
        }
    };
    if let Some(a) = auth {
        calls.extend(quote!(.authenticate(#a)));
    }
    (calls, items)
}

/// `name` and `path` in an identifier, one to one: ASCII letters and digits stay, every other byte
/// is `_` and two hex digits.
fn ident_part(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// A constant named after the processor's path and name, in the module the processor is in: a
/// second processor with the same name on the same path in that module defines it again, which
/// rustc reports at the second `name` ("the name `duplicate_processor_name_…` is defined multiple
/// times"). Across modules the registry refuses the pair when the app starts.
fn duplicate_marker(path: &LitStr, name: &LitStr) -> TokenStream {
    let marker = format_ident!(
        "duplicate_processor_name_{}_on_path_{}",
        ident_part(&name.value()),
        ident_part(&path.value()),
        span = name.span()
    );
    quote_spanned! {name.span()=>
        #[doc(hidden)]
        #[allow(dead_code, non_upper_case_globals)]
        const #marker: () = ();
    }
}

/// Generates the code; no error paths.
pub(super) fn tokens(model: &Model) -> TokenStream {
    let Model {
        path,
        kinds,
        name,
        func,
        ..
    } = model;
    let rt = rt(model);
    let kind_checks = kinds.iter().map(|k| {
        // A plain literal with the user's span, so the checker's patterns match `r"…"` too.
        let lit = LitStr::new(&k.value(), k.span());
        quote_spanned!(k.span()=> crate::kinds_are_declared_with_ocean_runtime_kinds_at_the_crate_root!(#lit; #rt);)
    });
    let marker = duplicate_marker(path, name);
    let handle = handle(model);
    let options = options(model);
    let requirements = requirements(model);
    let (calls, items) = registration_options(model);
    quote! {
        #func

        #marker

        const _: () = {
            #(#kind_checks)*

            struct __OceanProcessor;

            impl #rt::WebhookProcessor for __OceanProcessor {
                #handle
                #options
            }

            #requirements
            #items

            #rt::inventory::submit! {
                #rt::Registration::new(#path, #name, &[#(#kinds),*], &__OceanProcessor)
                    #calls
                    .requirements(__ocean_requirements)
            }
        };
    }
}
