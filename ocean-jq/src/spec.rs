//! The facts that the macros (which check attributes at compile time) and the runtime (which
//! registers processors and runs verifiers) must agree on, in one place: the built-in ingress
//! verifiers with their arguments, and the rules of a processor path. Matches on [`Verifier`] are
//! exhaustive on both sides, so a new verifier is a compile error wherever it must be handled.

/// A built-in ingress verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verifier {
    /// GitHub's `X-Hub-Signature-256`.
    GitHub,
    /// Atlassian's `X-Hub-Signature`.
    Jira,
    /// A shared token in a header (GitLab's `X-Gitlab-Token`).
    Token,
    /// Standard Webhooks v1.
    StandardWebhooks,
}

impl Verifier {
    /// Every built-in verifier.
    pub const ALL: [Self; 4] = [
        Self::GitHub,
        Self::Jira,
        Self::Token,
        Self::StandardWebhooks,
    ];

    /// Its name in `authenticate = <name>(…)`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::Jira => "jira",
            Self::Token => "token",
            Self::StandardWebhooks => "standard_webhooks",
        }
    }

    /// The arguments it takes.
    #[must_use]
    pub const fn args(self) -> &'static [&'static str] {
        match self {
            Self::GitHub | Self::Jira => &["secret"],
            Self::Token => &["header", "secret"],
            Self::StandardWebhooks => &["secret", "tolerance"],
        }
    }

    /// The verifier called `name`, if it is a built-in one.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// What is wrong with a processor path, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// It does not start with `/`.
    NotAbsolute,
    /// It has an empty segment (`//` or a trailing `/`).
    EmptySegment,
    /// It holds a space, `?`, `#`, `{` or `}`.
    BadCharacter,
}

impl PathProblem {
    /// What to tell the author.
    #[must_use]
    pub const fn message(self) -> &'static str {
        match self {
            Self::NotAbsolute => "must start with `/`",
            Self::EmptySegment => "has an empty segment (`//` or a trailing `/`)",
            Self::BadCharacter => "may not contain spaces, `?`, `#`, `{` or `}`",
        }
    }
}

/// Checks a processor path (`/webhook`, `/gitlab/system`): the first problem, if any.
#[must_use]
pub fn path_problem(path: &str) -> Option<PathProblem> {
    if !path.starts_with('/') {
        Some(PathProblem::NotAbsolute)
    } else if path.len() > 1 && path[1..].split('/').any(str::is_empty) {
        Some(PathProblem::EmptySegment)
    } else if path
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '?' | '#' | '{' | '}'))
    {
        Some(PathProblem::BadCharacter)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_paths_are_checked() {
        for v in Verifier::ALL {
            assert_eq!(Verifier::from_name(v.name()), Some(v));
            assert!(v.args().contains(&"secret"));
        }
        assert_eq!(Verifier::from_name("gitlab"), None);
        assert_eq!(path_problem("/webhook"), None);
        assert_eq!(path_problem("/"), None);
        assert_eq!(path_problem("webhook"), Some(PathProblem::NotAbsolute));
        assert_eq!(path_problem("/a//b"), Some(PathProblem::EmptySegment));
        assert_eq!(path_problem("/a/"), Some(PathProblem::EmptySegment));
        assert_eq!(path_problem("/a b"), Some(PathProblem::BadCharacter));
        assert_eq!(path_problem("/{id}"), Some(PathProblem::BadCharacter));
    }
}
