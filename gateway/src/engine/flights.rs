//! One fetch at a time for each thing fetched from a peer.
//!
//! A receiver that meets a new sender (or a new consent version) gets a whole window of
//! envelopes at once, and every one of them names the same certificate chain and the same consent
//! view. Without coordination each would ask the sender for it over the connection. [`Flights`]
//! lets the first ask and the others wait for its answer: concurrent callers with the same key
//! share one fetch and its result, success or failure. Once it has ended the key is forgotten, so
//! a later caller (after a failure, say) fetches anew; a fetched thing is stored by the caller,
//! not kept here.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// Fetches in progress, by key.
pub(super) struct Flights<K, V> {
    running: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    pub(super) fn new() -> Self {
        Self {
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `fetch` for `key` unless a fetch for it is already running, in which case waits for
    /// that one; returns the fetch's result either way. If the caller running the fetch is
    /// cancelled, a waiting caller runs its own.
    pub(super) async fn once<F, Fut>(&self, key: K, fetch: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = Arc::clone(
            self.running
                .lock()
                .expect("flights")
                .entry(key.clone())
                .or_default(),
        );
        let value = cell.get_or_init(fetch).await.clone();
        let mut running = self.running.lock().expect("flights");
        if running.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            running.remove(&key);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_fetch_and_a_later_caller_fetches_anew() {
        let flights = Arc::new(Flights::<u8, Result<u32, String>>::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let callers: Vec<_> = (0..32)
            .map(|_| {
                let (flights, fetches, gate) = (flights.clone(), fetches.clone(), gate.clone());
                tokio::spawn(async move {
                    flights
                        .once(7, || async {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            // Held open until every caller has had time to join.
                            gate.notified().await;
                            Err::<u32, _>("the peer did not answer".to_string())
                        })
                        .await
                })
            })
            .collect();
        while fetches.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        gate.notify_one();
        for c in callers {
            assert_eq!(c.await.unwrap(), Err("the peer did not answer".to_string()));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // The failure is not kept: the next caller asks again, and another key is its own.
        let again = flights
            .once(7, || async {
                fetches.fetch_add(1, Ordering::SeqCst);
                Ok(1)
            })
            .await;
        assert_eq!(again, Ok(1));
        assert_eq!(flights.once(8, || async { Ok(2) }).await, Ok(2));
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert!(flights.running.lock().unwrap().is_empty());
    }
}
