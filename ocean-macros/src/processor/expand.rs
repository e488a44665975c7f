//! A valid model → the processor type, its trait impl and its registration.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::LitStr;

use super::validate::Model;

/// Generates the code; no error paths.
pub(super) fn tokens(model: &Model) -> TokenStream {
    let Model {
        path,
        kinds,
        matches,
        name,
        func,
    } = model;
    let ident = &func.sig.ident;
    let rt = quote!(::ocean_runtime::__private);
    let kind_checks = kinds.iter().map(|k| {
        // A plain literal with the user's span, so the checker's patterns match `r"…"` too.
        let lit = LitStr::new(&k.value(), k.span());
        quote_spanned!(k.span()=> crate::__ocean_kinds_check!(#lit);)
    });
    let matches = match matches {
        Some(m) => quote!(::core::option::Option::Some(#m)),
        None => quote!(::core::option::Option::None),
    };
    let call = quote_spanned! {func.sig.output_span()=>
        ::core::result::Result::map_err(#ident(job.event()).await, ::core::convert::Into::into)
    };
    quote! {
        #func

        const _: () = {
            #(#kind_checks)*

            struct __OceanProcessor;

            impl #rt::WebhookProcessor for __OceanProcessor {
                fn handle<'a>(
                    &'a self,
                    job: &'a #rt::JobContext<'a>,
                ) -> #rt::BoxFuture<'a, ::core::result::Result<#rt::RawResults, #rt::ProcessError>> {
                    ::std::boxed::Box::pin(async move {
                        let __ocean_out: ::core::result::Result<#rt::RawResults, #rt::ProcessError> = #call;
                        __ocean_out
                    })
                }
            }

            #rt::inventory::submit! {
                #rt::Registration {
                    path: #path,
                    name: #name,
                    kinds: &[#(#kinds),*],
                    matches: #matches,
                    processor: &__OceanProcessor,
                }
            }
        };
    }
}

trait OutputSpan {
    fn output_span(&self) -> proc_macro2::Span;
}

impl OutputSpan for syn::Signature {
    /// The span of the return type, so a wrong return type is reported there.
    fn output_span(&self) -> proc_macro2::Span {
        match &self.output {
            syn::ReturnType::Type(_, ty) => syn::spanned::Spanned::span(&**ty),
            syn::ReturnType::Default => self.ident.span(),
        }
    }
}
