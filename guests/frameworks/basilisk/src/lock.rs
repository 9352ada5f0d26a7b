//! An async lock: the connection tasks of a partition share the
//! application (its routes, limiter, statistics and store client) through
//! it. Safe code: the value (boxed) is moved out while a guard holds it and put
//! back when the guard drops, which wakes every waiter (the first polled
//! takes it, the others wait again). A waiter that is dropped (a request
//! timed out) leaves nothing behind that could hold the others up.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::ops::{Deref, DerefMut};
use core::task::{Poll, Waker};

/// The lock.
#[derive(Debug)]
pub struct Lock<T> {
    /// Boxed: taking it and putting it back moves a pointer, not the
    /// value (an application's state is kilobytes, moved twice a request).
    value: spin::Mutex<Option<Box<T>>>,
    waiters: spin::Mutex<Vec<Waker>>,
}

/// Holds the value until dropped.
#[derive(Debug)]
pub struct Guard<'a, T> {
    lock: &'a Lock<T>,
    value: Option<Box<T>>,
}

impl<T> Lock<T> {
    pub fn new(value: T) -> Lock<T> {
        Lock { value: spin::Mutex::new(Some(Box::new(value))), waiters: spin::Mutex::new(Vec::new()) }
    }

    /// Waits for the value.
    pub async fn lock(&self) -> Guard<'_, T> {
        poll_fn(|cx| {
            if let Some(v) = self.value.lock().take() {
                return Poll::Ready(Guard { lock: self, value: Some(v) });
            }
            let mut w = self.waiters.lock();
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.value {
            Some(v) => v,
            None => unreachable!("a guard holds the value until it is dropped"),
        }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.value {
            Some(v) => v,
            None => unreachable!("a guard holds the value until it is dropped"),
        }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        *self.lock.value.lock() = self.value.take();
        let waiters = core::mem::take(&mut *self.lock.waiters.lock());
        for w in waiters {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::sync::Arc;
    use alloc::task::Wake;
    use alloc::vec::Vec;
    use core::future::Future;
    use core::pin::pin;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use core::task::Context;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn waiters_are_woken_and_a_dropped_one_holds_nobody_up() {
        let lock = Lock::new(Vec::<u32>::new());
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut first = pin!(lock.lock());
        let Poll::Ready(mut g) = first.as_mut().poll(&mut cx) else { panic!("free lock") };
        g.push(1);
        let mut second = pin!(async {
            lock.lock().await.push(2);
        });
        let mut third = pin!(async {
            lock.lock().await.push(3);
        });
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert!(third.as_mut().poll(&mut cx).is_pending());
        {
            // A waiter that gives up (its request timed out).
            let mut quitter = pin!(lock.lock());
            assert!(quitter.as_mut().poll(&mut cx).is_pending());
        }
        drop(g);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "the waiters are woken (one waker: one task)");
        assert!(third.as_mut().poll(&mut cx).is_ready());
        assert!(second.as_mut().poll(&mut cx).is_ready());
        assert_eq!(*crate::block_on(lock.lock()), [1, 3, 2]);
    }
}
