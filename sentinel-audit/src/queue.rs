//! The writer's queue: bounded like `std::sync::mpsc::sync_channel`, but
//! its memory follows what is queued instead of being allocated — and
//! touched — for the whole capacity up front. A `sync_channel` of 65,536
//! events holds over 20 MiB of resident memory in a daemon that is idle
//! most of the time; this one holds a few blocks of events until a burst
//! comes, and gives them back after it.
//!
//! An unbounded channel carries the items; a counter of queued items, with
//! a condition variable to wait on, makes it bounded.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvError, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};

struct Gate {
    queued: AtomicUsize,
    capacity: usize,
    /// Set when the receiver is gone: senders stop waiting.
    closed: AtomicBool,
    lock: Mutex<()>,
    room: Condvar,
}

impl Gate {
    fn try_enter(&self) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Waits for room; `false` when the receiver is gone.
    fn enter(&self) -> bool {
        if self.try_enter() {
            return true;
        }
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            if self.try_enter() {
                return true;
            }
            guard = self.room.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn leave(&self) {
        let before = self.queued.fetch_sub(1, Ordering::AcqRel);
        if before >= self.capacity {
            // A sender may be waiting: it checked under the lock, so taking
            // it here orders this wake-up after its wait.
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.room.notify_all();
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.room.notify_all();
    }
}

/// The sending side; cheap to share by reference.
pub(crate) struct QueueSender<T> {
    tx: Sender<Item<T>>,
    gate: Arc<Gate>,
}

/// The receiving side.
pub(crate) struct QueueReceiver<T> {
    rx: Receiver<Item<T>>,
    gate: Arc<Gate>,
}

/// Bounded items count against the capacity; unbounded ones (rare control
/// messages) do not.
enum Item<T> {
    Bounded(T),
    Unbounded(T),
}

/// A queue holding at most `capacity` bounded items.
pub(crate) fn queue<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let (tx, rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        queued: AtomicUsize::new(0),
        capacity: capacity.max(1),
        closed: AtomicBool::new(false),
        lock: Mutex::new(()),
        room: Condvar::new(),
    });
    (
        QueueSender {
            tx,
            gate: Arc::clone(&gate),
        },
        QueueReceiver { rx, gate },
    )
}

impl<T> QueueSender<T> {
    /// Queues `item`, waiting while the queue is full; gives it back when
    /// the receiver is gone.
    pub fn send(&self, item: T) -> Result<(), T> {
        if !self.gate.enter() {
            return Err(item);
        }
        self.tx.send(Item::Bounded(item)).map_err(|e| {
            self.gate.leave();
            e.0.into_inner()
        })
    }

    /// Queues `item` if there is room; gives it back otherwise.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        if self.gate.closed.load(Ordering::Acquire) || !self.gate.try_enter() {
            return Err(item);
        }
        self.tx.send(Item::Bounded(item)).map_err(|e| {
            self.gate.leave();
            e.0.into_inner()
        })
    }

    /// Queues `item` whether or not the queue is full.
    pub fn send_unbounded(&self, item: T) -> Result<(), T> {
        self.tx
            .send(Item::Unbounded(item))
            .map_err(|e| e.0.into_inner())
    }
}

impl<T> Item<T> {
    fn into_inner(self) -> T {
        match self {
            Item::Bounded(t) | Item::Unbounded(t) => t,
        }
    }
}

impl<T> QueueReceiver<T> {
    fn take(&self, item: Item<T>) -> T {
        if matches!(item, Item::Bounded(_)) {
            self.gate.leave();
        }
        item.into_inner()
    }

    /// Waits for the next item; `Err` once every sender is gone and the
    /// queue is empty.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.rx.recv().map(|item| self.take(item))
    }

    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv().map(|item| self.take(item))
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        self.gate.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn holds_at_most_its_capacity_and_waits_for_room() {
        let (tx, rx) = queue::<u32>(2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert_eq!(tx.try_send(3), Err(3));
        // Control messages pass a full queue.
        assert!(tx.send_unbounded(99).is_ok());
        let tx = Arc::new(tx);
        let sender = {
            let tx = Arc::clone(&tx);
            std::thread::spawn(move || tx.send(4))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!sender.is_finished(), "send waits while the queue is full");
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(sender.join().expect("sender"), Ok(()));
        let rest: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(rest, vec![2, 99, 4]);
    }

    #[test]
    fn a_waiting_sender_gets_its_item_back_when_the_receiver_goes() {
        let (tx, rx) = queue::<u32>(1);
        assert!(tx.send(1).is_ok());
        let sender = std::thread::spawn(move || tx.send(2));
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        assert_eq!(sender.join().expect("sender"), Err(2));
    }
}
