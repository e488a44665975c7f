//! Webhook signature verifiers, run at ingress over the raw body before anything is stored.
//!
//! A processor declares one with `authenticate = …` (see [`Authenticate`]). Secrets come from the
//! integration's variables (`secret = "webhook_secret"` reads `OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET`);
//! a comma-separated value holds several secrets, any of which is accepted, so a secret can be
//! rotated without losing deliveries. Comparisons are constant-time.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::ConfigError;
use crate::event::WebhookEvent;
use crate::integration_config::{IntegrationVars, var_name};
use ocean_jq::spec::Verifier as Builtin;

/// A processor's `authenticate` declaration, as registered (secrets are named, not held).
#[derive(Clone, Copy)]
pub enum Authenticate {
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    GitHub {
        /// Integration config field holding the secret(s).
        secret: &'static str,
    },
    /// Atlassian/Jira: `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    Jira {
        /// Integration config field holding the secret(s).
        secret: &'static str,
    },
    /// A shared token sent as-is in a header (GitLab's `X-Gitlab-Token` style).
    Token {
        /// The header (case-insensitive).
        header: &'static str,
        /// Integration config field holding the token(s).
        secret: &'static str,
    },
    /// Standard Webhooks v1: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`
    /// over `id.timestamp.body`, with a `whsec_` base64 secret.
    StandardWebhooks {
        /// Integration config field holding the secret(s).
        secret: &'static str,
        /// How far the timestamp may be from now.
        tolerance: Duration,
    },
    /// The author's own check over the event's raw body and headers.
    Custom(fn(&WebhookEvent) -> Result<(), String>),
}

impl fmt::Debug for Authenticate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Authenticate {
    /// The verifier's name as written in the attribute.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::GitHub { .. } => Builtin::GitHub.name(),
            Self::Jira { .. } => Builtin::Jira.name(),
            Self::Token { .. } => Builtin::Token.name(),
            Self::StandardWebhooks { .. } => Builtin::StandardWebhooks.name(),
            Self::Custom(_) => "custom",
        }
    }

    /// Resolves the secrets; `processor` names the declaring processor in errors.
    ///
    /// # Errors
    /// The secret's variable is unset.
    pub fn bind(&self, processor: &str, vars: &IntegrationVars) -> Result<Verifier, ConfigError> {
        let secrets = |field: &str| -> Result<Vec<Vec<u8>>, ConfigError> {
            let value = vars.get(field).ok_or_else(|| ConfigError::Missing {
                var: var_name(field),
                because: format!(
                    "processor `{processor}` authenticates with `{}`",
                    self.name()
                ),
            })?;
            Ok(value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.as_bytes().to_vec())
                .collect())
        };
        let kind = match *self {
            Self::GitHub { secret } => Kind::HubSignature {
                header: "x-hub-signature-256",
                secrets: secrets(secret)?,
            },
            Self::Jira { secret } => Kind::HubSignature {
                header: "x-hub-signature",
                secrets: secrets(secret)?,
            },
            Self::Token { header, secret } => Kind::Token {
                header: header.to_ascii_lowercase(),
                secrets: secrets(secret)?,
            },
            Self::StandardWebhooks { secret, tolerance } => {
                let raw = secrets(secret)?;
                let mut keys = Vec::with_capacity(raw.len());
                for s in raw {
                    let text = String::from_utf8_lossy(&s);
                    let b64 = text.strip_prefix("whsec_").unwrap_or(&text);
                    let key = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| ConfigError::Invalid {
                            var: var_name(secret),
                            value: "***".to_owned(),
                            reason: format!("a Standard Webhooks secret is `whsec_<base64>`: {e}"),
                        })?;
                    keys.push(key);
                }
                Kind::StandardWebhooks { keys, tolerance }
            }
            Self::Custom(f) => Kind::Custom(f),
        };
        Ok(Verifier {
            name: self.name(),
            kind,
        })
    }
}

enum Kind {
    HubSignature {
        header: &'static str,
        secrets: Vec<Vec<u8>>,
    },
    Token {
        header: String,
        secrets: Vec<Vec<u8>>,
    },
    StandardWebhooks {
        keys: Vec<Vec<u8>>,
        tolerance: Duration,
    },
    Custom(fn(&WebhookEvent) -> Result<(), String>),
}

/// A verifier with its secrets, ready to check deliveries.
pub struct Verifier {
    name: &'static str,
    kind: Kind,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for p in parts {
        mac.update(p);
    }
    mac
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

impl Verifier {
    /// The verifier's name (`github`, `token`…).
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Checks a delivery now.
    ///
    /// # Errors
    /// Why the delivery is not authentic.
    pub fn verify(&self, event: &WebhookEvent) -> Result<(), String> {
        self.verify_at(event, SystemTime::now())
    }

    /// Checks a delivery as of `now` (for the timestamp tolerance).
    ///
    /// # Errors
    /// Why the delivery is not authentic.
    pub fn verify_at(&self, event: &WebhookEvent, now: SystemTime) -> Result<(), String> {
        match &self.kind {
            Kind::HubSignature { header, secrets } => {
                let value = event
                    .header(header)
                    .ok_or_else(|| format!("missing `{header}` header"))?;
                let hex = value
                    .strip_prefix("sha256=")
                    .ok_or_else(|| format!("`{header}` must be `sha256=<hex>`"))?;
                let signature =
                    hex_decode(hex).ok_or_else(|| format!("`{header}` is not hexadecimal"))?;
                let ok = secrets.iter().any(|s| {
                    hmac_sha256(s, &[event.raw_body()])
                        .verify_slice(&signature)
                        .is_ok()
                });
                if ok {
                    Ok(())
                } else {
                    Err(format!("`{header}` does not match the body"))
                }
            }
            Kind::Token { header, secrets } => {
                let value = event
                    .header(header)
                    .ok_or_else(|| format!("missing `{header}` header"))?;
                let ok = secrets
                    .iter()
                    .any(|s| bool::from(s.as_slice().ct_eq(value.as_bytes())));
                if ok {
                    Ok(())
                } else {
                    Err(format!("`{header}` is not an accepted token"))
                }
            }
            Kind::StandardWebhooks { keys, tolerance } => {
                let id = event
                    .header("webhook-id")
                    .ok_or("missing `webhook-id` header")?;
                let ts = event
                    .header("webhook-timestamp")
                    .ok_or("missing `webhook-timestamp` header")?;
                let sigs = event
                    .header("webhook-signature")
                    .ok_or("missing `webhook-signature` header")?;
                let secs: u64 = ts
                    .trim()
                    .parse()
                    .map_err(|_| "`webhook-timestamp` is not a number of seconds")?;
                // A forged timestamp may lie past what the clock can hold.
                let sent = UNIX_EPOCH
                    .checked_add(Duration::from_secs(secs))
                    .ok_or("`webhook-timestamp` is out of range")?;
                let skew = now.duration_since(sent).unwrap_or_else(|e| e.duration());
                if skew > *tolerance {
                    return Err(format!(
                        "`webhook-timestamp` is {} s away from now (tolerance {} s)",
                        skew.as_secs(),
                        tolerance.as_secs()
                    ));
                }
                let candidates: Vec<Vec<u8>> = sigs
                    .split_whitespace()
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .collect();
                let ok = keys.iter().any(|key| {
                    let mac = hmac_sha256(
                        key,
                        &[id.as_bytes(), b".", ts.as_bytes(), b".", event.raw_body()],
                    );
                    let expected = mac.finalize().into_bytes();
                    candidates
                        .iter()
                        .any(|c| bool::from(c.as_slice().ct_eq(expected.as_slice())))
                });
                if ok {
                    Ok(())
                } else {
                    Err("no `webhook-signature` matches the body".to_owned())
                }
            }
            Kind::Custom(f) => f(event),
        }
    }
}

/// Turns what an `authenticate = my_fn` returns into the verifier's answer.
pub trait AuthOutcome {
    /// `Ok` when authentic.
    ///
    /// # Errors
    /// Why not.
    fn into_auth(self) -> Result<(), String>;
}

impl AuthOutcome for bool {
    fn into_auth(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("the integration's authenticate check refused the delivery".to_owned())
        }
    }
}

impl<E: fmt::Display> AuthOutcome for Result<(), E> {
    fn into_auth(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// Signs `body` like GitHub does (`sha256=<hex>`); for tests and demo senders.
#[must_use]
#[cfg(any(test, feature = "testing"))]
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let bytes = hmac_sha256(secret.as_bytes(), &[body])
        .finalize()
        .into_bytes();
    let mut out = String::from("sha256=");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Signs a delivery like Standard Webhooks v1 (`v1,<base64>`); for tests and demo senders.
///
/// # Errors
/// The secret is not `whsec_<base64>`.
///
/// Used like [`github_signature`].
#[cfg(any(test, feature = "testing"))]
pub fn standard_webhooks_signature(
    secret: &str,
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> Result<String, base64::DecodeError> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))?;
    let ts = timestamp.to_string();
    let mac = hmac_sha256(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(headers: &[(&str, &str)], body: &str) -> WebhookEvent {
        WebhookEvent::new(
            "e",
            "/hook",
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            body.to_owned(),
        )
        .unwrap()
    }

    fn vars(value: &str) -> IntegrationVars {
        IntegrationVars::from_vars([("OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET", value)])
    }

    const BODY: &str = r#"{"action":"opened"}"#;

    #[test]
    fn github_accepts_valid_and_rotated_secrets_and_rejects_others() {
        let v = Authenticate::GitHub {
            secret: "webhook_secret",
        }
        .bind("p", &vars("new, old"))
        .unwrap();
        for secret in ["new", "old"] {
            let sig = github_signature(secret, BODY.as_bytes());
            assert_eq!(
                v.verify(&event(&[("X-Hub-Signature-256", &sig)], BODY)),
                Ok(())
            );
        }
        let forged = github_signature("other", BODY.as_bytes());
        let err = v
            .verify(&event(&[("X-Hub-Signature-256", &forged)], BODY))
            .unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        let tampered = github_signature("new", BODY.as_bytes());
        assert!(
            v.verify(&event(
                &[("X-Hub-Signature-256", &tampered)],
                r#"{"action":"closed"}"#
            ))
            .is_err()
        );
        assert!(v.verify(&event(&[], BODY)).unwrap_err().contains("missing"));
    }

    #[test]
    fn a_missing_secret_names_the_variable_and_the_processor() {
        let err = Authenticate::GitHub {
            secret: "gh_secret",
        }
        .bind("push", &IntegrationVars::default())
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("OCEAN__INTEGRATION__CONFIG__GH_SECRET must be set"),
            "{err}"
        );
        assert!(err.contains("`push`"), "{err}");
    }

    #[test]
    fn token_header_compares_exactly() {
        let v = Authenticate::Token {
            header: "X-Gitlab-Token",
            secret: "webhook_secret",
        }
        .bind("p", &vars("t1,t2"))
        .unwrap();
        assert_eq!(v.verify(&event(&[("x-gitlab-token", "t2")], BODY)), Ok(()));
        assert!(v.verify(&event(&[("x-gitlab-token", "t3")], BODY)).is_err());
        assert!(v.verify(&event(&[("x-gitlab-token", "t")], BODY)).is_err());
    }

    #[test]
    fn standard_webhooks_checks_signature_and_timestamp() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let v = Authenticate::StandardWebhooks {
            secret: "webhook_secret",
            tolerance: Duration::from_secs(300),
        }
        .bind("p", &vars(secret))
        .unwrap();
        let ts = 1_700_000_000;
        let sig = standard_webhooks_signature(secret, "msg_1", ts, BODY.as_bytes()).unwrap();
        let e = event(
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &ts.to_string()),
                ("webhook-signature", &format!("v1,bm9wZQ== {sig}")),
            ],
            BODY,
        );
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(v.verify_at(&e, at(ts + 10)), Ok(()));
        let stale = v.verify_at(&e, at(ts + 301)).unwrap_err();
        assert!(stale.contains("tolerance 300 s"), "{stale}");
        assert!(
            v.verify_at(&e, at(ts - 301)).is_err(),
            "future timestamps too"
        );
        let other = event(
            &[
                ("webhook-id", "msg_2"),
                ("webhook-timestamp", &ts.to_string()),
                ("webhook-signature", &sig),
            ],
            BODY,
        );
        assert!(v.verify_at(&other, at(ts)).is_err(), "id is signed");
    }

    #[test]
    fn jira_uses_x_hub_signature() {
        let v = Authenticate::Jira {
            secret: "webhook_secret",
        }
        .bind("p", &vars("s"))
        .unwrap();
        let sig = github_signature("s", BODY.as_bytes());
        assert_eq!(v.verify(&event(&[("X-Hub-Signature", &sig)], BODY)), Ok(()));
        assert!(
            v.verify(&event(&[("X-Hub-Signature-256", &sig)], BODY))
                .is_err()
        );
    }
}

#[cfg(test)]
mod properties {
    //! No verifier accepts a forged delivery: a mutated signature, another secret, a timestamp
    //! outside the tolerance or any header value at all but the right one.
    use super::*;
    use proptest::prelude::*;

    fn event(headers: Vec<(String, String)>, body: &str) -> WebhookEvent {
        WebhookEvent::new("e", "/hook", headers, body.to_owned()).unwrap_or_else(|e| {
            unreachable!("the body is JSON: {e}");
        })
    }

    fn bind(auth: Authenticate, secret: &str) -> Verifier {
        auth.bind(
            "p",
            &IntegrationVars::from_vars([("OCEAN__INTEGRATION__CONFIG__SECRET", secret)]),
        )
        .unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// `signature` with the character at `at` changed to another one of the same alphabet.
    fn mutate(signature: &str, at: usize) -> String {
        let mut chars: Vec<char> = signature.chars().collect();
        let i = at % chars.len();
        chars[i] = match chars[i] {
            '0' => '1',
            'a' => 'b',
            'A' => 'B',
            _ => '0',
        };
        chars.into_iter().collect()
    }

    fn secret() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_]{1,32}"
    }

    proptest! {
        #![proptest_config(crate::arbitrary::config(256))]

        #[test]
        fn hub_signatures_accept_only_the_body_signed_with_the_secret(
            value in crate::arbitrary::json(),
            secret in secret(),
            other in secret(),
            at in any::<usize>(),
            forged in ".{0,80}",
            jira in any::<bool>(),
        ) {
            prop_assume!(secret != other);
            let (auth, header) = if jira {
                (Authenticate::Jira { secret: "secret" }, "x-hub-signature")
            } else {
                (Authenticate::GitHub { secret: "secret" }, "x-hub-signature-256")
            };
            let v = bind(auth, &secret);
            let body = serde_json::json!({"payload": value}).to_string();
            let signed = |sig: String| event(vec![(header.to_owned(), sig)], &body);
            let right = github_signature(&secret, body.as_bytes());
            prop_assert!(v.verify(&signed(right.clone())).is_ok());
            prop_assert!(v.verify(&signed(mutate(&right, 7 + at % 64))).is_err());
            prop_assert!(v.verify(&signed(github_signature(&other, body.as_bytes()))).is_err());
            prop_assert!(v.verify(&signed(right.to_uppercase().replace("SHA256=", "sha256="))).is_ok(), "hex case does not matter");
            if forged != right {
                prop_assert!(v.verify(&signed(forged)).is_err());
            }
            let tampered = serde_json::json!({"payload": value, "x": 1}).to_string();
            prop_assert!(v.verify(&event(vec![(header.to_owned(), right)], &tampered)).is_err());
        }

        #[test]
        fn a_token_is_accepted_only_as_it_is(
            secret in secret(),
            given in ".{0,40}",
        ) {
            let v = bind(Authenticate::Token { header: "X-Gitlab-Token", secret: "secret" }, &secret);
            let with = |token: &str| event(vec![("x-gitlab-token".to_owned(), token.to_owned())], "{}");
            prop_assert!(v.verify(&with(&secret)).is_ok());
            prop_assert_eq!(v.verify(&with(&given)).is_ok(), given == secret);
        }

        #[test]
        fn standard_webhooks_refuse_forged_stale_and_odd_deliveries(
            key in prop::collection::vec(any::<u8>(), 1..48),
            other in prop::collection::vec(any::<u8>(), 1..48),
            id in "[a-z0-9_]{1,20}",
            value in crate::arbitrary::json(),
            at in any::<usize>(),
            skew in 301u64..1_000_000,
            timestamp in any::<u64>(),
            forged in ".{0,80}",
        ) {
            use base64::Engine;
            prop_assume!(key != other);
            let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(&key));
            let other = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(&other));
            let v = bind(
                Authenticate::StandardWebhooks { secret: "secret", tolerance: Duration::from_secs(300) },
                &secret,
            );
            let body = serde_json::json!({"payload": value}).to_string();
            let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let at_time = |ts: u64, sig: String| {
                event(
                    vec![
                        ("webhook-id".to_owned(), id.clone()),
                        ("webhook-timestamp".to_owned(), ts.to_string()),
                        ("webhook-signature".to_owned(), sig),
                    ],
                    &body,
                )
            };
            let sign = |secret: &str, ts: u64| {
                standard_webhooks_signature(secret, &id, ts, body.as_bytes())
                    .unwrap_or_else(|e| unreachable!("{e}"))
            };
            let ts = 1_800_000_000;
            let right = sign(&secret, ts);
            prop_assert!(v.verify_at(&at_time(ts, right.clone()), now).is_ok());
            prop_assert!(v.verify_at(&at_time(ts, mutate(&right, 3 + at % 40)), now).is_err());
            prop_assert!(v.verify_at(&at_time(ts, sign(&other, ts)), now).is_err());
            if forged != right {
                prop_assert!(v.verify_at(&at_time(ts, forged), now).is_err());
            }
            // Signed right, but sent too long before or after now.
            for stale in [ts - skew, ts + skew] {
                prop_assert!(v.verify_at(&at_time(stale, sign(&secret, stale)), now).is_err());
            }
            // Any timestamp at all, signed or not: an answer, never a panic.
            prop_assert!(v.verify_at(&at_time(timestamp, sign(&secret, timestamp)), now).is_ok() == (timestamp.abs_diff(ts) <= 300));
        }
    }
}
