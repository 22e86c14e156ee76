//! The bounded offline queue: reported patches and telemetry wait here while the device is
//! offline, and go back here (at the front, in order) if a connection drops before the hub
//! acknowledged them. When full, new items are refused with an error; nothing already accepted
//! is ever dropped.

use std::collections::VecDeque;

use tokio::sync::oneshot;

use crate::error::{AgentError, Result};

/// What to send.
#[derive(Debug)]
pub enum Payload {
    /// A reported-properties patch (validated JSON bytes).
    Reported(Vec<u8>),
    /// A device-to-cloud message: body and encoded topic properties.
    Telemetry {
        /// Message body.
        body: Vec<u8>,
        /// Percent-encoded `k=v&...` appended to the topic.
        properties: String,
    },
}

impl Payload {
    /// "reported" or "telemetry".
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Reported(_) => "reported",
            Self::Telemetry { .. } => "telemetry",
        }
    }
}

/// The hub's answer for an item: for reported patches the new reported `$version`.
pub type Receipt = Result<Option<u64>>;

/// One queued item and whoever waits for its receipt.
#[derive(Debug)]
pub struct Item {
    /// The content.
    pub payload: Payload,
    /// Told once the hub acknowledged (or definitively rejected) the item.
    pub done: Option<oneshot::Sender<Receipt>>,
    /// How many times it was sent and not acknowledged.
    pub attempts: u32,
}

impl Item {
    /// Completes the item.
    pub fn finish(mut self, receipt: Receipt) {
        if let Some(done) = self.done.take() {
            // The waiter may have gone away; that is fine.
            let _ = done.send(receipt);
        }
    }
}

/// Bounded FIFO of [`Item`]s with separate capacities per kind.
#[derive(Debug)]
pub struct OfflineQueue {
    items: VecDeque<Item>,
    reported_capacity: usize,
    telemetry_capacity: usize,
    reported: usize,
    telemetry: usize,
}

impl OfflineQueue {
    /// A queue holding at most the given numbers of reported patches and telemetry messages.
    pub fn new(reported_capacity: usize, telemetry_capacity: usize) -> Self {
        Self {
            items: VecDeque::new(),
            reported_capacity,
            telemetry_capacity,
            reported: 0,
            telemetry: 0,
        }
    }

    /// Appends a new item, or refuses it (handing it back finished with the error) when full.
    pub fn push(&mut self, item: Item) -> Result<(), AgentError> {
        let (count, capacity) = self.counter(&item.payload);
        if count >= capacity {
            let err = AgentError::QueueFull {
                kind: item.payload.kind(),
                capacity,
            };
            let again = AgentError::QueueFull {
                kind: item.payload.kind(),
                capacity,
            };
            item.finish(Err(err));
            return Err(again);
        }
        self.bump(&item.payload, true);
        self.items.push_back(item);
        Ok(())
    }

    /// Puts items that were in flight back at the front, keeping their order. Capacity is not
    /// checked: these were already accepted.
    pub fn requeue_front(&mut self, items: impl DoubleEndedIterator<Item = Item>) {
        for mut item in items.rev() {
            item.attempts += 1;
            self.bump(&item.payload, true);
            self.items.push_front(item);
        }
    }

    /// Takes the oldest item.
    pub fn pop(&mut self) -> Option<Item> {
        let item = self.items.pop_front()?;
        self.bump(&item.payload, false);
        Some(item)
    }

    /// True when the oldest item is a reported patch.
    pub fn front_is_reported(&self) -> bool {
        matches!(
            self.items.front().map(|item| &item.payload),
            Some(Payload::Reported(_))
        )
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn counter(&self, payload: &Payload) -> (usize, usize) {
        match payload {
            Payload::Reported(_) => (self.reported, self.reported_capacity),
            Payload::Telemetry { .. } => (self.telemetry, self.telemetry_capacity),
        }
    }

    fn bump(&mut self, payload: &Payload, up: bool) {
        let counter = match payload {
            Payload::Reported(_) => &mut self.reported,
            Payload::Telemetry { .. } => &mut self.telemetry,
        };
        *counter = if up {
            *counter + 1
        } else {
            counter.saturating_sub(1)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(n: u8) -> Item {
        Item {
            payload: Payload::Reported(vec![n]),
            done: None,
            attempts: 0,
        }
    }

    #[test]
    fn refuses_when_full_and_keeps_what_it_has() {
        let mut q = OfflineQueue::new(2, 1);
        q.push(reported(1)).unwrap();
        q.push(reported(2)).unwrap();
        let (tx, mut rx) = oneshot::channel();
        let err = q
            .push(Item {
                payload: Payload::Reported(vec![3]),
                done: Some(tx),
                attempts: 0,
            })
            .unwrap_err();
        assert!(matches!(
            err,
            AgentError::QueueFull {
                kind: "reported",
                capacity: 2
            }
        ));
        assert!(matches!(
            rx.try_recv(),
            Ok(Err(AgentError::QueueFull { .. }))
        ));
        // Telemetry has its own budget.
        q.push(Item {
            payload: Payload::Telemetry {
                body: vec![],
                properties: String::new(),
            },
            done: None,
            attempts: 0,
        })
        .unwrap();
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn requeued_items_go_first_in_order() {
        let mut q = OfflineQueue::new(10, 10);
        q.push(reported(3)).unwrap();
        q.requeue_front(vec![reported(1), reported(2)].into_iter());
        let order: Vec<u8> = std::iter::from_fn(|| q.pop())
            .map(|i| match i.payload {
                Payload::Reported(b) => b[0],
                Payload::Telemetry { .. } => 0,
            })
            .collect();
        assert_eq!(order, [1, 2, 3]);
    }
}
