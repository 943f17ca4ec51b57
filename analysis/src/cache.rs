//! A bounded, thread-safe cache of analyses keyed by template.
//!
//! Every tokio worker looks statements up here, so the cache is sharded (one `Mutex` per shard,
//! chosen by the key's hash) and each operation is O(1). Eviction is *generational*, a cheap
//! approximation of LRU without linked lists or `unsafe`: each shard keeps a `young` and an `old`
//! map; inserts go to `young`; when `young` is full (by entries or bytes) it becomes `old` and the
//! previous `old` is dropped; a hit in `old` moves the entry back to `young`. An entry survives as
//! long as it is used at least once per generation, and the shard never holds more than two
//! generations, so both the entry count and the memory are bounded.
//!
//! Keys are hashed with std's `RandomState` (SipHash with per-process keys), so a client cannot
//! craft SQL texts that collide into one bucket.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::facts::Analysis;

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to parse.
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
    /// Estimated heap bytes held now (keys and analyses).
    pub bytes: usize,
}

pub(crate) struct TemplateCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Per shard and generation.
    entries_per_generation: usize,
    bytes_per_generation: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Shard {
    young: Generation,
    old: Generation,
}

#[derive(Default)]
struct Generation {
    entries: HashMap<Box<str>, Entry>,
    bytes: usize,
}

struct Entry {
    analysis: Arc<Analysis>,
    bytes: usize,
}

impl Generation {
    fn insert(&mut self, key: Box<str>, entry: Entry) {
        self.bytes += entry.bytes;
        if let Some(previous) = self.entries.insert(key, entry) {
            self.bytes = self.bytes.saturating_sub(previous.bytes);
        }
    }

    fn remove(&mut self, key: &str) -> Option<(Box<str>, Entry)> {
        let (key, entry) = self.entries.remove_entry(key)?;
        self.bytes = self.bytes.saturating_sub(entry.bytes);
        Some((key, entry))
    }
}

const MAX_SHARDS: usize = 16;
/// Below this many entries per shard, fewer shards are used so the bound stays exact.
const MIN_ENTRIES_PER_SHARD: usize = 64;

impl TemplateCache {
    /// A cache holding at most `max_entries` analyses and about `max_bytes` of memory.
    /// `max_entries == 0` disables caching.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        let shard_count = (max_entries / MIN_ENTRIES_PER_SHARD).clamp(1, MAX_SHARDS);
        let generations = 2 * shard_count;
        TemplateCache {
            shards: (0..shard_count).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            entries_per_generation: max_entries / generations,
            bytes_per_generation: max_bytes / generations,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The most entries the cache can hold.
    pub(crate) fn max_entries(&self) -> usize {
        self.entries_per_generation * 2 * self.shards.len()
    }

    fn shard(&self, key: &str) -> Option<&Mutex<Shard>> {
        let hash = self.hasher.hash_one(key);
        let count = self.shards.len() as u64;
        self.shards.get(usize::try_from(hash % count.max(1)).ok()?)
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<Analysis>> {
        let found = self.shard(key).and_then(|shard| {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = shard.young.entries.get(key) {
                return Some(Arc::clone(&entry.analysis));
            }
            let (key, entry) = shard.old.remove(key)?;
            let analysis = Arc::clone(&entry.analysis);
            self.promote(&mut shard, key, entry);
            Some(analysis)
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(crate) fn insert(&self, key: &str, analysis: Arc<Analysis>) {
        let bytes = key.len() + analysis.heap_bytes() + std::mem::size_of::<Entry>();
        if self.entries_per_generation == 0 || bytes > self.bytes_per_generation {
            return;
        }
        if let Some(shard) = self.shard(key) {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if shard.young.entries.contains_key(key) {
                return;
            }
            shard.old.remove(key);
            self.promote(&mut shard, key.into(), Entry { analysis, bytes });
        }
    }

    /// Put an entry into the young generation, rotating generations first if it is full.
    fn promote(&self, shard: &mut Shard, key: Box<str>, entry: Entry) {
        let full = shard.young.entries.len() >= self.entries_per_generation
            || shard.young.bytes + entry.bytes > self.bytes_per_generation;
        if full {
            shard.old = std::mem::take(&mut shard.young);
        }
        shard.young.insert(key, entry);
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let mut stats = CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            ..CacheStats::default()
        };
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            stats.entries += shard.young.entries.len() + shard.old.entries.len();
            stats.bytes += shard.young.bytes + shard.old.bytes;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::Dialect;
    use crate::facts::Outcome;

    fn analysis(text: &str) -> Arc<Analysis> {
        Arc::new(Analysis {
            dialect: Dialect::PostgreSql,
            redacted_sql: text.to_string(),
            outcome: Outcome::Parsed,
            statements: Vec::new(),
        })
    }

    #[test]
    fn holds_at_most_its_capacity() {
        let cache = TemplateCache::new(100, usize::MAX);
        for i in 0..10_000 {
            let key = format!("SELECT {i}");
            cache.insert(&key, analysis(&key));
            assert!(cache.stats().entries <= 100);
        }
        assert!(cache.stats().entries >= 50, "one full generation stays");
    }

    #[test]
    fn holds_at_most_its_byte_budget() {
        let budget = 64 * 1024;
        let cache = TemplateCache::new(1_000_000, budget);
        let big = "x".repeat(1000);
        for i in 0..1000 {
            let key = format!("{i}{big}");
            cache.insert(&key, analysis(&big));
        }
        assert!(cache.stats().bytes <= budget, "{:?}", cache.stats());
        let huge = "y".repeat(budget);
        cache.insert("huge", analysis(&huge));
        assert!(
            cache.get("huge").is_none(),
            "an entry over the budget is not cached"
        );
    }

    #[test]
    fn frequently_used_entries_survive_rotation() {
        let cache = TemplateCache::new(64, usize::MAX);
        cache.insert("hot", analysis("hot"));
        for i in 0..1000 {
            let key = format!("cold {i}");
            cache.insert(&key, analysis(&key));
            assert!(
                cache.get("hot").is_some(),
                "lost the hot entry after {i} inserts"
            );
        }
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = TemplateCache::new(0, usize::MAX);
        cache.insert("a", analysis("a"));
        assert!(cache.get("a").is_none());
        assert_eq!(cache.max_entries(), 0);
    }

    #[test]
    fn counts_hits_and_misses() {
        let cache = TemplateCache::new(10, usize::MAX);
        assert!(cache.get("a").is_none());
        cache.insert("a", analysis("a"));
        assert!(cache.get("a").is_some());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
    }
}
