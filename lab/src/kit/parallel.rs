//! One bounded worker pool, for the tasks that run QEMU guests a few at a
//! time (QEMU under TCG uses about one core).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `f` on every item, at most `max_parallel` at a time, the items taken in
/// their order as workers come free; the results in the items' order. A
/// panic in `f` reaches the caller (with its own payload) once the other
/// workers have run out of items.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    max_parallel: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let workers = max_parallel.max(1).min(items.len());
    let panicked = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(item) = items.get(i) else { break };
                        let r = f(item);
                        results.lock().unwrap()[i] = Some(r);
                    }
                })
            })
            .collect();
        // Joined here, so that the scope does not replace the payload.
        handles.into_iter().filter_map(|h| h.join().err()).next()
    });
    if let Some(payload) = panicked {
        std::panic::resume_unwind(payload);
    }
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn results_come_in_the_items_order() {
        // Later items finish first.
        let items: Vec<u64> = (0..9).collect();
        let out = parallel_map(&items, 3, |&i| {
            std::thread::sleep(Duration::from_millis(5 * (9 - i)));
            i * 10
        });
        assert_eq!(out, (0..9).map(|i| i * 10).collect::<Vec<_>>());
        assert!(parallel_map(&[] as &[u8], 2, |&x| x).is_empty());
    }

    #[test]
    fn no_more_than_max_parallel_run_at_once() {
        let running = AtomicUsize::new(0);
        let high = AtomicUsize::new(0);
        let items = [(); 12];
        parallel_map(&items, 2, |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            high.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            running.fetch_sub(1, Ordering::SeqCst);
        });
        assert_eq!(high.load(Ordering::SeqCst), 2);
        // Zero means one at a time.
        high.store(0, Ordering::SeqCst);
        parallel_map(&items[..3], 0, |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            high.fetch_max(now, Ordering::SeqCst);
            running.fetch_sub(1, Ordering::SeqCst);
        });
        assert_eq!(high.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_panic_in_a_worker_reaches_the_caller() {
        let ran = AtomicUsize::new(0);
        let res = std::panic::catch_unwind(|| {
            parallel_map(&[1, 2, 3, 4], 2, |&i| {
                ran.fetch_add(1, Ordering::SeqCst);
                if i == 2 {
                    panic!("item {i} failed");
                }
                i
            })
        });
        let payload = res.expect_err("the panic propagates");
        let msg = payload
            .downcast_ref::<String>()
            .expect("the worker's own payload");
        assert_eq!(msg, "item 2 failed");
        // The other items still ran.
        assert_eq!(ran.load(Ordering::SeqCst), 4);
    }
}
