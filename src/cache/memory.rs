//! The in-process user cache: bounded, with a TTL (moka). It keeps the chatroom list only:
//! `GET /user/me` shows the admin role, which `gemchat admin` changes from another process
//! that cannot reach this memory, so without Redis it is read every time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use moka::ops::compute::Op;

use super::{Body, UserCache, Version, View};
use crate::users::model::UserId;

/// Users whose views one process keeps.
const CAPACITY: u64 = 50_000;

#[derive(Clone)]
struct Entry {
    version: Version,
    /// By [`View::index`]; `None` where nothing valid is stored (an invalidation keeps the
    /// entry, with every view `None`, for its version).
    views: [Option<Body>; View::ALL.len()],
}

pub(crate) struct MemoryUserCache {
    entries: moka::future::Cache<UserId, Entry>,
    /// The version the next invalidation sets: versions never repeat, even after an entry
    /// expired and was dropped.
    next_version: AtomicU64,
}

impl MemoryUserCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build(),
            next_version: AtomicU64::new(1),
        }
    }
}

#[async_trait]
impl UserCache for MemoryUserCache {
    async fn get(
        &self,
        user: UserId,
        view: View,
        _current: Option<Version>,
        now: DateTime<Utc>,
    ) -> Result<Bytes, Version> {
        let Some(entry) = self.entries.get(&user).await else {
            return Err(0);
        };
        match &entry.views[view.index()] {
            Some(body) if body.is_valid_at(now) => Ok(body.json.clone()),
            _ => Err(entry.version),
        }
    }

    async fn put(&self, user: UserId, view: View, version: Version, body: Body) {
        if view != View::Chatrooms {
            return;
        }
        self.entries
            .entry(user)
            .and_compute_with(|current| {
                let mut entry = current.map_or(
                    Entry {
                        version: 0,
                        views: Default::default(),
                    },
                    |e| e.into_value(),
                );
                std::future::ready(if entry.version == version {
                    entry.views[view.index()] = Some(body);
                    Op::Put(entry)
                } else {
                    Op::Nop
                })
            })
            .await;
    }

    async fn invalidate(&self, user: UserId) {
        let version = self.next_version.fetch_add(1, Ordering::Relaxed);
        self.entries
            .insert(
                user,
                Entry {
                    version,
                    views: Default::default(),
                },
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &'static str, valid_until: DateTime<Utc>) -> Body {
        Body {
            json: Bytes::from_static(json.as_bytes()),
            valid_until,
        }
    }

    #[tokio::test]
    async fn a_body_read_before_an_invalidation_is_never_stored() {
        let cache = MemoryUserCache::new(Duration::from_secs(60));
        let user = UserId::new();
        let now = Utc::now();
        let later = now + chrono::Duration::hours(1);
        let version = cache.get(user, View::Chatrooms, None, now).await.err();
        cache.invalidate(user).await;
        cache
            .put(
                user,
                View::Chatrooms,
                version.unwrap_or(u64::MAX),
                body("stale", later),
            )
            .await;
        let next = cache.get(user, View::Chatrooms, None, now).await;
        assert!(next.is_err(), "the stale list was not stored");
        cache
            .put(
                user,
                View::Chatrooms,
                next.err().unwrap_or(0),
                body("fresh", later),
            )
            .await;
        assert_eq!(
            cache.get(user, View::Chatrooms, None, now).await.ok(),
            Some(Bytes::from_static(b"fresh"))
        );
    }

    #[tokio::test]
    async fn a_body_past_its_instant_is_a_miss_and_me_is_not_kept() {
        let cache = MemoryUserCache::new(Duration::from_secs(60));
        let user = UserId::new();
        let now = Utc::now();
        let soon = now + chrono::Duration::seconds(1);
        let version = cache
            .get(user, View::Chatrooms, None, now)
            .await
            .err()
            .unwrap_or(u64::MAX);
        cache
            .put(user, View::Chatrooms, version, body("rooms", soon))
            .await;
        cache.put(user, View::Me, version, body("me", soon)).await;
        assert_eq!(
            cache.get(user, View::Chatrooms, None, now).await.ok(),
            Some(Bytes::from_static(b"rooms"))
        );
        assert_eq!(
            cache.get(user, View::Chatrooms, None, soon).await.err(),
            Some(version),
            "past its instant: a miss, stored again under the same version"
        );
        assert!(cache.get(user, View::Me, None, now).await.is_err());
    }
}
