//! The facts that the macros (which check attributes at compile time) and the runtime (which
//! registers processors and runs verifiers) must agree on, in one place: the built-in ingress
//! verifiers with their arguments, the rules of a processor path, the duration strings of
//! attributes and the defaults they override. Matches on [`Verifier`] are
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

/// A verifier's `tolerance` when none is given: Standard Webhooks' five minutes.
pub const STANDARD_WEBHOOKS_TOLERANCE_MS: u64 = 5 * 60 * 1000;

/// The retry policy of a processor whose attribute says nothing of it: Ocean's.
pub mod retry {
    /// Retries after the first attempt.
    pub const MAX: u32 = 3;
    /// The first retry's delay.
    pub const INITIAL_MS: u64 = 1_000;
    /// The longest delay between two attempts.
    pub const MAX_DELAY_MS: u64 = 30_000;
    /// The factor from one delay to the next.
    pub const BASE: f64 = 2.0;
    /// The most retries an attribute may ask for.
    pub const MAX_LIMIT: u32 = 100;
    /// The range of `base` an attribute may ask for.
    pub const BASE_RANGE: std::ops::RangeInclusive<f64> = 1.0..=10.0;
}

/// Milliseconds of a duration string of an attribute (`"500ms"`, `"30s"`, `"2m"`, `"1h"`,
/// `"1m30s"`), or what is wrong with it.
///
/// # Errors
/// A sentence for the author: a missing number or unit, an unknown unit, or an overflow.
pub fn duration_millis(text: &str) -> Result<u64, String> {
    const HELP: &str =
        "write whole numbers with units ms, s, m or h, e.g. \"500ms\", \"30s\", \"1m30s\"";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration; {HELP}"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "bad duration `{text}`: expected a number at `{rest}`; {HELP}"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad duration `{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => {
                return Err(format!(
                    "bad duration `{text}`: `{number}` has no unit; {HELP}"
                ));
            }
            other => {
                return Err(format!(
                    "bad duration `{text}`: unknown unit `{other}`; {HELP}"
                ));
            }
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(factor)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| format!("bad duration `{text}`: too long"))?;
    }
    Ok(total)
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

    #[test]
    fn units_add_up() {
        assert_eq!(duration_millis("500ms"), Ok(500));
        assert_eq!(duration_millis("30s"), Ok(30_000));
        assert_eq!(duration_millis("1m30s"), Ok(90_000));
        assert_eq!(duration_millis("2h"), Ok(7_200_000));
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(duration_millis("30").unwrap_err().contains("has no unit"));
        assert!(
            duration_millis("5 sec")
                .unwrap_err()
                .contains("unknown unit ` sec`")
        );
        assert!(
            duration_millis("s")
                .unwrap_err()
                .contains("expected a number")
        );
        assert!(duration_millis("").unwrap_err().contains("empty duration"));
    }
}
