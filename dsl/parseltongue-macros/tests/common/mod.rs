//! Channel memory for host tests: a "bus" that hands out both ends of named
//! channels, backed by page-aligned heap memory that is never freed (so an
//! endpoint can never outlive its memory).
#![allow(dead_code, unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::ptr::NonNull;

use hallows_ring::{ChannelLayout, Message, Receiver, Sender};

#[derive(Default)]
pub struct Bus {
    channels: RefCell<HashMap<String, (NonNull<u8>, ChannelLayout)>>,
    /// Messages each channel created from now on holds at least.
    pub slots: usize,
    taken: RefCell<Vec<(String, bool)>>,
}

impl Bus {
    pub fn new(slots: usize) -> Self {
        Bus { slots, ..Default::default() }
    }

    fn memory<T: Message>(&self, name: &str) -> (NonNull<u8>, ChannelLayout) {
        let slots = self.slots;
        *self.channels.borrow_mut().entry(name.to_owned()).or_insert_with(|| {
            // The fewest slots (a power of two) whose ring holds `slots`
            // messages: one slot per block carries the block's stamp.
            let mut n = slots.next_power_of_two().max(2);
            while ChannelLayout::for_message::<T>(n).expect("layout").capacity() < slots {
                n *= 2;
            }
            let layout = ChannelLayout::for_message::<T>(n).expect("layout");
            let alloc = std::alloc::Layout::from_size_align(layout.total_size(), 4096).unwrap();
            // SAFETY: non-zero size; the memory is zeroed and deliberately
            // leaked, so it stays valid for every endpoint made from it.
            let p = unsafe { std::alloc::alloc_zeroed(alloc) };
            (NonNull::new(p).expect("allocation"), layout)
        })
    }

    fn take(&self, name: &str, producer: bool) {
        let key = (name.to_owned(), producer);
        let mut taken = self.taken.borrow_mut();
        assert!(!taken.contains(&key), "two {} for channel {name}", if producer { "senders" } else { "receivers" });
        taken.push(key);
    }

    /// The end of `name` (sending if `producer`) was dropped: a partition
    /// restarting, which opens it again on the same memory.
    pub fn restart(&self, name: &str, producer: bool) {
        self.taken.borrow_mut().retain(|k| k != &(name.to_owned(), producer));
    }

    pub fn sender<T: Message>(&self, name: &str) -> Sender<T> {
        self.take(name, true);
        let (base, layout) = self.memory::<T>(name);
        // SAFETY: `base` is `layout.total_size()` bytes of page-aligned,
        // never-freed memory laid out by `layout`; `take` ensures this is
        // the channel's only Sender.
        unsafe { Sender::new(base, layout) }.expect("sender")
    }

    pub fn receiver<T: Message>(&self, name: &str) -> Receiver<T> {
        self.take(name, false);
        let (base, layout) = self.memory::<T>(name);
        // SAFETY: as for `sender`; the only Receiver.
        unsafe { Receiver::new(base, layout) }.expect("receiver")
    }
}

/// Implements a generated module's `Endpoints` trait for a bus restricted
/// to the channels one service may open.
#[macro_export]
macro_rules! endpoints_for {
    ($module:ident) => {
        impl $module::Endpoints for common::Bus {
            type Sender<T: hallows_ring::Message> = hallows_ring::Sender<T>;
            type Receiver<T: hallows_ring::Message> = hallows_ring::Receiver<T>;
            fn sender<T: hallows_ring::Message>(&self, channel: &str) -> Option<hallows_ring::Sender<T>> {
                Some(common::Bus::sender(self, channel))
            }
            fn receiver<T: hallows_ring::Message>(&self, channel: &str) -> Option<hallows_ring::Receiver<T>> {
                Some(common::Bus::receiver(self, channel))
            }
        }
    };
}
