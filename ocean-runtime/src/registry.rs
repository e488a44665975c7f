//! The processors of this binary, collected from the inventory and checked once at start-up.

use std::collections::BTreeMap;

use ocean_jq::JqProgram;

use serde_json::Value;

use crate::config::ConfigError;
use crate::event::WebhookEvent;
use crate::extract::Requirement;
use crate::integration_config::IntegrationVars;
use crate::processor::{ProcessError, Registration, WebhookProcessor};
use crate::verify::{Authenticate, Verifier};

/// A registry that cannot be built.
///
/// Why the processors of a binary cannot be served, e.g. two with one name on a path (see
/// [`#[webhook_processor]`](crate::webhook_processor)).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Nothing was registered.
    #[error(
        "no webhook processor is registered in this binary. Annotate an `async fn` with \
         #[webhook_processor(...)]; if your processors live in another library crate, the binary must \
         mention that crate (e.g. `use my_processors as _;` next to `ocean_runtime::main!()`), otherwise \
         the linker drops it and its registrations with it"
    )]
    Empty,
    /// Two processors share a name on one path.
    #[error("two processors are named `{name}` on path `{path}`; give one of them another `name`")]
    DuplicateName {
        /// The path.
        path: String,
        /// The repeated name.
        name: String,
    },
    /// A path the macro would refuse too (see `ocean_jq::spec::path_problem`).
    #[error("processor `{name}` has path `{path}`, which {reason}")]
    BadPath {
        /// The processor.
        name: String,
        /// The path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A jq option that does not compile (only hand-written registrations can get here).
    #[error("processor `{name}`: `{option}` does not compile: {error}")]
    BadJq {
        /// The processor.
        name: String,
        /// `matches`, `group` or `validate`.
        option: &'static str,
        /// The jq error.
        error: ocean_jq::JqErrors,
    },
}

/// A registered processor, with its jq options compiled.
pub struct RegisteredProcessor {
    name: &'static str,
    kinds: &'static [&'static str],
    matcher: Option<JqProgram>,
    group: Option<JqProgram>,
    validate: Option<JqProgram>,
    authenticate: Option<Authenticate>,
    verifier: Option<Verifier>,
    latest_only: bool,
    requirements: Vec<Requirement>,
    processor: &'static dyn WebhookProcessor,
}

impl std::fmt::Debug for RegisteredProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredProcessor")
            .field("name", &self.name)
            .field("kinds", &self.kinds)
            .field("matcher", &self.matcher)
            .field("group", &self.group)
            .field("validate", &self.validate)
            .field("authenticate", &self.authenticate)
            .field("requirements", &self.requirements)
            .finish_non_exhaustive()
    }
}

impl RegisteredProcessor {
    /// The processor's name, unique on its path.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The kinds this processor declares.
    #[must_use]
    pub fn kinds(&self) -> &'static [&'static str] {
        self.kinds
    }

    /// The kinds this event affects: the processor's own answer (limited to its declared kinds),
    /// else the declared kinds.
    #[must_use]
    pub fn kinds_for(&self, event: &WebhookEvent) -> Vec<String> {
        match self.processor.matching_kinds(event) {
            None => self.kinds.iter().map(|k| (*k).to_owned()).collect(),
            Some(mut kinds) => {
                kinds.retain(|k| {
                    let declared = self.kinds.contains(&k.as_str());
                    if !declared {
                        tracing::warn!(processor = self.name, kind = %k, "matching_kinds returned a kind the processor does not declare; ignored");
                    }
                    declared
                });
                kinds.sort_unstable();
                kinds.dedup();
                kinds
            }
        }
    }

    /// Whether only the latest event of a group needs processing.
    #[must_use]
    pub fn latest_only(&self) -> bool {
        self.latest_only
    }

    /// Whether the processor has a `group` expression.
    #[must_use]
    pub fn has_group(&self) -> bool {
        self.group.is_some()
    }

    /// This processor's ordering key for an event (`group`), if it has one and it yields a value.
    #[must_use]
    pub fn group_key(&self, payload: &ocean_jq::Input<'_>) -> Option<String> {
        let program = self.group.as_ref()?;
        match program.first_json(payload).as_ref().map(|v| v.as_deref()) {
            Ok(Some(Value::Null) | None) => None,
            Ok(Some(Value::String(s))) => Some(format!("{}:{s}", self.name)),
            Ok(Some(other)) => Some(format!("{}:{other}", self.name)),
            Err(e) => {
                tracing::debug!(processor = self.name, error = %e, "group failed; the event has no ordering key");
                None
            }
        }
    }

    /// Runs the `validate` predicate.
    ///
    /// # Errors
    /// The predicate is false, yields nothing or fails: a permanent error.
    pub fn validate_payload(&self, payload: &ocean_jq::Input<'_>) -> Result<(), ProcessError> {
        let Some(program) = &self.validate else {
            return Ok(());
        };
        match program.first_json(payload) {
            Ok(Some(v)) if ocean_jq::json_truthy(&v) => Ok(()),
            Ok(_) => Err(ProcessError::permanent(format!(
                "the payload fails `validate`: {}",
                program.code()
            ))),
            Err(e) => Err(ProcessError::permanent(format!(
                "`validate` ({}) failed on the payload: {e}",
                program.code()
            ))),
        }
    }

    /// The ingress verifier, once [`Registry::bind`] resolved its secrets.
    #[must_use]
    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// What the handler's arguments need.
    #[must_use]
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the processor takes the event: `matches` yields a true value and `should_process` agrees.
    /// A `matches` expression that fails at run time counts as false.
    #[must_use]
    pub fn selects(&self, event: &WebhookEvent, payload: &ocean_jq::Input<'_>) -> bool {
        let matched = match &self.matcher {
            None => true,
            Some(program) => match program.first_json(payload) {
                Ok(Some(v)) => ocean_jq::json_truthy(&v),
                Ok(None) => false,
                Err(e) => {
                    tracing::debug!(processor = self.name, error = %e, "matches failed; processor not selected");
                    false
                }
            },
        };
        matched && self.processor.should_process(event)
    }

    /// The processor.
    #[must_use]
    pub fn processor(&self) -> &'static dyn WebhookProcessor {
        self.processor
    }
}

/// Every processor, grouped by path, sorted by name.
#[derive(Debug, Default)]
pub struct Registry {
    paths: BTreeMap<&'static str, Vec<RegisteredProcessor>>,
}

impl Registry {
    /// Collects every `#[webhook_processor]` and hand-written registration linked into this binary.
    ///
    /// # Errors
    /// See [`Registry::from_registrations`].
    pub fn from_inventory() -> Result<Self, RegistryError> {
        Self::from_registrations(inventory::iter::<Registration>)
    }

    /// Builds a registry from registrations: sorts them by (path, name), rejects duplicate names on a
    /// path, compiles every `matches` once.
    ///
    /// # Errors
    /// No registration at all, a duplicate name, a bad path, or a `matches` that does not compile.
    pub fn from_registrations<'a>(
        regs: impl IntoIterator<Item = &'a Registration>,
    ) -> Result<Self, RegistryError> {
        let mut paths: BTreeMap<&'static str, Vec<RegisteredProcessor>> = BTreeMap::new();
        for reg in regs {
            if let Some(problem) = ocean_jq::spec::path_problem(reg.path) {
                return Err(RegistryError::BadPath {
                    name: reg.name.to_owned(),
                    path: reg.path.to_owned(),
                    reason: problem.message(),
                });
            }
            let compile = |option: &'static str, code: Option<&'static str>| {
                code.map(JqProgram::compile)
                    .transpose()
                    .map_err(|error| RegistryError::BadJq {
                        name: reg.name.to_owned(),
                        option,
                        error,
                    })
            };
            paths
                .entry(reg.path)
                .or_default()
                .push(RegisteredProcessor {
                    name: reg.name,
                    kinds: reg.kinds,
                    matcher: compile("matches", reg.matches)?,
                    group: compile("group", reg.group)?,
                    validate: compile("validate", reg.validate)?,
                    authenticate: reg.authenticate,
                    verifier: None,
                    latest_only: reg.latest_only && reg.group.is_some(),
                    requirements: (reg.requirements)(),
                    processor: reg.processor,
                });
        }
        if paths.is_empty() {
            return Err(RegistryError::Empty);
        }
        for (path, procs) in &mut paths {
            procs.sort_by_key(|p| p.name);
            if let Some(w) = procs.windows(2).find(|w| w[0].name == w[1].name) {
                return Err(RegistryError::DuplicateName {
                    path: (*path).to_owned(),
                    name: w[0].name.to_owned(),
                });
            }
        }
        Ok(Self { paths })
    }

    /// Resolves the secrets of every processor's verifier.
    ///
    /// # Errors
    /// A secret's variable is unset or malformed; the error names it.
    pub fn bind(&mut self, vars: &IntegrationVars) -> Result<(), ConfigError> {
        for p in self.paths.values_mut().flatten() {
            if let Some(auth) = &p.authenticate {
                p.verifier = Some(auth.bind(p.name, vars)?);
            }
        }
        Ok(())
    }

    /// Every processor, path by path.
    pub fn all(&self) -> impl Iterator<Item = &RegisteredProcessor> + '_ {
        self.paths.values().flatten()
    }

    /// The registered paths, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.paths.keys().copied()
    }

    /// The processors of `path`, sorted by name; `None` for an unknown path.
    #[must_use]
    pub fn processors(&self, path: &str) -> Option<&[RegisteredProcessor]> {
        self.paths.get(path).map(Vec::as_slice)
    }

    /// Every kind some processor declares, sorted and without repeats.
    #[must_use]
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self
            .paths
            .values()
            .flatten()
            .flat_map(|p| p.kinds.iter().copied())
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::{BoxFuture, JobContext, ProcessError, RawResults};

    struct Nop;
    impl WebhookProcessor for Nop {
        fn handle<'a>(
            &'a self,
            _job: &'a JobContext<'a>,
        ) -> BoxFuture<'a, Result<RawResults, ProcessError>> {
            Box::pin(async { Ok(RawResults::none()) })
        }
    }

    fn reg(path: &'static str, name: &'static str, matches: Option<&'static str>) -> Registration {
        let r = Registration::new(path, name, &["k"], &Nop);
        match matches {
            Some(m) => r.matches(m),
            None => r,
        }
    }

    #[test]
    fn empty_registry_names_the_linker_cause() {
        let err = Registry::from_registrations([]).unwrap_err();
        assert!(err.to_string().contains("use my_processors as _;"), "{err}");
    }

    #[test]
    fn duplicate_names_on_a_path_are_rejected_but_allowed_across_paths() {
        let a = [reg("/a", "x", None), reg("/a", "x", None)];
        assert!(matches!(
            Registry::from_registrations(&a),
            Err(RegistryError::DuplicateName { .. })
        ));
        let b = [reg("/a", "x", None), reg("/b", "x", None)];
        assert_eq!(Registry::from_registrations(&b).unwrap().paths().count(), 2);
    }

    #[test]
    fn processors_are_sorted_by_name() {
        let r =
            Registry::from_registrations(&[reg("/a", "b", None), reg("/a", "a", None)]).unwrap();
        let names: Vec<_> = r
            .processors("/a")
            .unwrap()
            .iter()
            .map(RegisteredProcessor::name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(r.processors("/zzz").is_none());
    }

    #[test]
    fn matcher_selects_by_payload() {
        let r = Registry::from_registrations(&[reg("/a", "a", Some(r#".type == "x""#))]).unwrap();
        let p = &r.processors("/a").unwrap()[0];
        let yes = WebhookEvent::new("1", "/a", [], r#"{"type":"x"}"#.to_owned()).unwrap();
        let no = WebhookEvent::new("2", "/a", [], r#"{"type":"y"}"#.to_owned()).unwrap();
        assert!(p.selects(&yes, &ocean_jq::Input::new(yes.payload())));
        assert!(!p.selects(&no, &ocean_jq::Input::new(no.payload())));
    }

    #[test]
    fn bad_matcher_and_bad_path_are_rejected() {
        assert!(matches!(
            Registry::from_registrations(&[reg("/a", "a", Some(".a | nosuch"))]),
            Err(RegistryError::BadJq {
                option: "matches",
                ..
            })
        ));
        assert!(matches!(
            Registry::from_registrations(&[reg("a", "a", None)]),
            Err(RegistryError::BadPath { .. })
        ));
        // The same rules as the macro's, from the same table: a hand-written registration gets
        // the macro's message.
        let e = Registry::from_registrations(&[reg("/a//b", "a", None)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "processor `a` has path `/a//b`, which has an empty segment (`//` or a trailing `/`)"
        );
    }
}
