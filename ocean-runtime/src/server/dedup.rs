//! Delivery-id deduplication: a sender that retries a delivery it already got a 200 for (same
//! `X-GitHub-Delivery`, `webhook-id`, … on the same path) is answered 200 again, and the event is not
//! queued twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::event::WebhookEvent;

/// Headers that carry a delivery id, in the order they are looked for.
pub(crate) const DEFAULT_HEADERS: &[&str] = &[
    "x-github-delivery",
    "webhook-id",
    "x-gitlab-event-uuid",
    "x-atlassian-webhook-identifier",
];

/// What to do with a delivery.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// First time (or no delivery id): queue it, then [`Dedup::accepted`] or [`Dedup::refused`].
    New(Option<String>),
    /// Already accepted as event `id`.
    Duplicate(String),
    /// The same delivery is being accepted right now by another request.
    InFlight,
}

struct Inner {
    /// key → accepted event id (`None` while being accepted).
    ids: HashMap<String, Option<String>>,
    /// Keys by acceptance time, to forget them after the window.
    order: VecDeque<(Instant, String)>,
}

/// Delivery ids accepted within the window.
pub(crate) struct Dedup {
    headers: Vec<String>,
    window: Duration,
    inner: Mutex<Inner>,
}

impl Dedup {
    pub(crate) fn new(headers: Vec<String>, window: Duration) -> Self {
        Self {
            headers,
            window,
            inner: Mutex::new(Inner {
                ids: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// The delivery key of `event` (path, header, value), when it carries a delivery id and
    /// deduplication is on.
    pub(crate) fn key(&self, event: &WebhookEvent) -> Option<String> {
        if self.window.is_zero() {
            return None;
        }
        self.headers.iter().find_map(|h| {
            event
                .header(h)
                .filter(|v| !v.is_empty())
                .map(|v| format!("{}\u{1f}{h}\u{1f}{v}", event.path()))
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers deliveries accepted before a restart (key, event id, age).
    pub(crate) fn preload(&self, entries: Vec<(String, String, Duration)>) {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut entries = entries;
        entries.sort_by_key(|e| std::cmp::Reverse(e.2));
        for (key, id, age) in entries {
            let at = now.checked_sub(age).unwrap_or(now);
            inner.ids.insert(key.clone(), Some(id));
            inner.order.push_back((at, key));
        }
    }

    /// Looks the delivery up, reserving its id when new.
    pub(crate) fn check(&self, event: &WebhookEvent) -> Seen {
        if self.window.is_zero() {
            return Seen::New(None);
        }
        let Some(key) = self.key(event) else {
            return Seen::New(None);
        };
        let mut inner = self.lock();
        let now = Instant::now();
        while let Some((at, _)) = inner.order.front() {
            if now.duration_since(*at) < self.window {
                break;
            }
            if let Some((_, old)) = inner.order.pop_front() {
                inner.ids.remove(&old);
            }
        }
        match inner.ids.get(&key) {
            Some(Some(id)) => Seen::Duplicate(id.clone()),
            Some(None) => Seen::InFlight,
            None => {
                inner.ids.insert(key.clone(), None);
                Seen::New(Some(key))
            }
        }
    }

    /// The delivery was queued as event `id`.
    pub(crate) fn accepted(&self, key: Option<String>, id: &str) {
        let Some(key) = key else { return };
        let mut inner = self.lock();
        inner.ids.insert(key.clone(), Some(id.to_owned()));
        inner.order.push_back((Instant::now(), key));
    }

    /// The delivery was not queued: forget the reservation so a retry is accepted.
    pub(crate) fn refused(&self, key: Option<String>) {
        if let Some(key) = key {
            self.lock().ids.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(path: &str, delivery: &str) -> WebhookEvent {
        WebhookEvent::new(
            "x",
            path,
            [("X-GitHub-Delivery".to_owned(), delivery.to_owned())],
            "{}".to_owned(),
        )
        .unwrap()
    }

    fn dedup(window: Duration) -> Dedup {
        Dedup::new(
            DEFAULT_HEADERS.iter().map(|h| (*h).to_owned()).collect(),
            window,
        )
    }

    #[test]
    fn a_delivery_is_accepted_once_per_path_within_the_window() {
        let d = dedup(Duration::from_secs(60));
        let Seen::New(key) = d.check(&event("/gh", "d-1")) else {
            panic!("first delivery is new")
        };
        assert_eq!(d.check(&event("/gh", "d-1")), Seen::InFlight);
        d.accepted(key, "event-1");
        assert_eq!(
            d.check(&event("/gh", "d-1")),
            Seen::Duplicate("event-1".into())
        );
        assert!(matches!(
            d.check(&event("/other", "d-1")),
            Seen::New(Some(_))
        ));
        assert!(matches!(d.check(&event("/gh", "d-2")), Seen::New(Some(_))));
    }

    #[test]
    fn a_refused_delivery_can_be_sent_again_and_old_ids_are_forgotten() {
        let d = dedup(Duration::from_secs(60));
        let Seen::New(key) = d.check(&event("/gh", "d-1")) else {
            panic!("new")
        };
        d.refused(key);
        assert!(matches!(d.check(&event("/gh", "d-1")), Seen::New(Some(_))));

        let short = dedup(Duration::from_nanos(1));
        let Seen::New(key) = short.check(&event("/gh", "d-9")) else {
            panic!("new")
        };
        short.accepted(key, "e");
        std::thread::sleep(Duration::from_millis(2));
        assert!(matches!(
            short.check(&event("/gh", "d-9")),
            Seen::New(Some(_))
        ));
        let no_header = WebhookEvent::new("x", "/gh", [], "{}".to_owned()).unwrap();
        assert_eq!(short.check(&no_header), Seen::New(None));
    }
}
