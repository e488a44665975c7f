//! What mapping reports: a leaf that does not compile ([`MappingError`]), and a problem with one
//! item at run time ([`MappingIssue`]), with where it was found.

use std::fmt;
use std::ops::Range;

use ocean_jq::JqErrors;

/// A mapping leaf that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    /// Where in the mapping, e.g. `resources[0].port.entity.mappings.properties.status`.
    pub field: String,
    /// The jq expression.
    pub expression: String,
    /// What jq said, with positions inside the expression.
    pub error: JqErrors,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: jq `{}`: {}",
            self.field, self.expression, self.error
        )
    }
}

impl std::error::Error for MappingError {}

/// What went wrong with one mapped item.
#[derive(Debug, Clone, PartialEq)]
pub enum IssueKind {
    /// A field's jq raised an error; the field was sent as `null`.
    Failed(String),
    /// A field's jq yielded `null` or nothing; the field was sent as `null`.
    Null,
    /// The item (or the `itemsToParse` element) produced no entity, for this reason.
    Skipped(String),
    /// The item was mapped, with this remark (e.g. the parent could not be trimmed).
    Note(String),
}

/// A problem with one item of a batch; the rest of the batch is mapped regardless.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingIssue {
    /// The resource's index in the mapping.
    pub resource: usize,
    /// The raw item's index in the job's results.
    pub item: usize,
    /// The element's index, when the item was expanded with `itemsToParse`.
    pub element: Option<usize>,
    /// The entity's identifier, when it was mapped with a plain string one.
    pub identifier: Option<String>,
    /// The entity's blueprint, when it was mapped.
    pub blueprint: Option<String>,
    /// Where in the resource, e.g. `port.entity.mappings.properties.status`.
    pub field: String,
    /// The jq expression at fault, if one is.
    pub expression: Option<String>,
    /// The part of `expression` at fault, as a byte range, when known (for a path yielding
    /// `null`: up to the first step that found nothing).
    pub span: Option<Range<usize>>,
    /// What happened.
    pub kind: IssueKind,
}

impl MappingIssue {
    /// The mapping field under `port.entity.mappings` (`properties.status`), if the issue is about
    /// one.
    #[must_use]
    pub fn mapping_field(&self) -> Option<&str> {
        self.field.strip_prefix("port.entity.mappings.")
    }
}

impl fmt::Display for MappingIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "resources[{}] item {}", self.resource, self.item)?;
        if let Some(e) = self.element {
            write!(f, " element {e}")?;
        }
        if let Some(id) = &self.identifier {
            write!(f, " ({id})")?;
        }
        write!(f, ": {}", self.field)?;
        if let Some(code) = &self.expression {
            write!(f, ": jq `{code}`")?;
        }
        match &self.kind {
            IssueKind::Failed(e) => write!(f, " failed: {e}; sent as null")?,
            IssueKind::Null => write!(f, " yielded null")?,
            IssueKind::Skipped(why) => write!(f, ": {why}; skipped")?,
            IssueKind::Note(what) => write!(f, ": {what}")?,
        }
        if let (Some(code), Some(span)) = (&self.expression, &self.span)
            && let Some(part) = code.get(span.clone())
        {
            write!(
                f,
                " (`{part}` at {}..{} found nothing)",
                span.start, span.end
            )?;
        }
        Ok(())
    }
}

/// Where an item is while it is mapped, for its issues.
#[derive(Clone, Copy)]
pub(super) struct At {
    pub(super) resource: usize,
    pub(super) item: usize,
    pub(super) element: Option<usize>,
}

impl At {
    pub(super) fn issue(self, field: String, kind: IssueKind) -> MappingIssue {
        MappingIssue {
            resource: self.resource,
            item: self.item,
            element: self.element,
            identifier: None,
            blueprint: None,
            field,
            expression: None,
            span: None,
            kind,
        }
    }
}
