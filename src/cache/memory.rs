//! The in-process list cache: bounded, with a TTL (moka).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use moka::ops::compute::Op;

use super::{ListCache, Version};
use crate::users::model::UserId;

/// Users whose list one process keeps.
const CAPACITY: u64 = 50_000;

#[derive(Clone)]
struct Entry {
    version: Version,
    /// `None` marks an invalidation (a tombstone keeping the version).
    list: Option<Bytes>,
}

pub(crate) struct MemoryListCache {
    entries: moka::future::Cache<UserId, Entry>,
}

impl MemoryListCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build(),
        }
    }
}

#[async_trait]
impl ListCache for MemoryListCache {
    async fn get(&self, user: UserId, _current: Option<Version>) -> Result<Bytes, Version> {
        match self.entries.get(&user).await {
            Some(Entry {
                list: Some(list), ..
            }) => Ok(list),
            Some(Entry { version, .. }) => Err(version),
            None => Err(0),
        }
    }

    async fn put(&self, user: UserId, version: Version, list: Bytes) {
        self.entries
            .entry(user)
            .and_compute_with(|current| {
                let current_version = current.map_or(0, |e| e.value().version);
                std::future::ready(if current_version == version {
                    Op::Put(Entry {
                        version,
                        list: Some(list),
                    })
                } else {
                    Op::Nop
                })
            })
            .await;
    }

    async fn invalidate(&self, user: UserId) {
        self.entries
            .entry(user)
            .and_compute_with(|current| {
                let version = current.map_or(0, |e| e.value().version) + 1;
                std::future::ready(Op::Put(Entry {
                    version,
                    list: None,
                }))
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_list_read_before_an_invalidation_is_never_stored() {
        let cache = MemoryListCache::new(Duration::from_secs(60));
        let user = UserId::new();
        let version = cache.get(user, None).await.err().unwrap_or(u64::MAX);
        cache.invalidate(user).await;
        cache.put(user, version, Bytes::from_static(b"stale")).await;
        let next = cache.get(user, None).await;
        assert!(next.is_err(), "the stale list was not stored");
        cache
            .put(user, next.err().unwrap_or(0), Bytes::from_static(b"fresh"))
            .await;
        assert_eq!(
            cache.get(user, None).await.ok(),
            Some(Bytes::from_static(b"fresh"))
        );
    }
}
