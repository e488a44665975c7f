//! The access token: fetched lazily, reused until shortly before it expires, refreshed once when
//! Port answers 401; and whether Port refuses this integration's credentials.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{PortClient, PortError, TOKEN_PATH};

pub(super) struct Token {
    header: String,
    refresh_at: Instant,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
    #[serde(default = "bearer")]
    token_type: String,
}

fn bearer() -> String {
    "Bearer".to_owned()
}

impl PortClient {
    pub(super) async fn token(&self, force: bool) -> Result<String, PortError> {
        let mut slot = self.token.lock().await;
        if !force && let Some(t) = slot.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.header.clone());
        }
        let body =
            json!({"clientId": self.config.client_id, "clientSecret": self.config.client_secret});
        let value = self
            .send(
                Method::POST,
                &["auth", "access_token"],
                &[],
                Some(&body),
                None,
                false,
            )
            .await?;
        let t: TokenResponse = serde_json::from_value(value).map_err(|e| PortError::Decode {
            path: TOKEN_PATH.to_owned(),
            reason: e.to_string(),
        })?;
        let life = Duration::from_secs(t.expires_in);
        let header = format!("{} {}", t.token_type, t.access_token);
        *slot = Some(Token {
            header: header.clone(),
            refresh_at: Instant::now() + life - life.min(Duration::from_secs(60)) / 2,
        });
        Ok(header)
    }

    /// Why Port refuses this integration's credentials, when its last answer did (see
    /// [`PortError::is_credentials`]); `None` once a call succeeds again. Readiness is false
    /// meanwhile, and the pipeline's workers pause with the events left queued.
    #[must_use]
    pub(crate) fn credentials_refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(why, _)| why.clone())
    }

    /// Records how the last authenticated call ended, for [`credentials_refused`](Self::credentials_refused).
    pub(super) fn note_credentials(&self, result: &Result<Value, PortError>, entity_op: bool) {
        let mut slot = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refusal = match result {
            Ok(_) if slot.as_ref().is_some_and(|(_, op)| *op != entity_op) => return,
            Ok(_) => None,
            Err(e) if e.is_credentials() => Some(format!(
                "Port refuses this integration's credentials ({e}); check OCEAN__PORT__CLIENT_ID and OCEAN__PORT__CLIENT_SECRET, and that they may write to OCEAN__PORT__BASE_URL ({})",
                self.base_url()
            )),
            // Any other failure says nothing new about the credentials.
            Err(_) => return,
        };
        match (&*slot, &refusal) {
            (None, Some(why)) => tracing::error!("{why}"),
            (Some(_), None) => tracing::info!("Port accepts the credentials again"),
            _ => {}
        }
        *slot = refusal.map(|why| (why, entity_op));
    }
}
