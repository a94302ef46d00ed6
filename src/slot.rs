//! A one-value mailbox for handing things between threads without either ever waiting.

use std::sync::atomic::{AtomicPtr, Ordering};

/// A one-value mailbox exchanged by atomic pointer swaps: putting and taking never block, and a
/// put replaces (and returns) what was waiting.
pub struct Slot<T> {
    value: AtomicPtr<T>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            value: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

impl<T> Slot<T> {
    // Sequentially consistent: with the preparer's idle flag, "put, then check the flag" on one
    // side and "set the flag, then take" on the other must not both miss.

    /// Puts `value` in the slot, returning the value it replaced.
    pub fn put(&self, value: T) -> Option<T> {
        let new = Box::into_raw(Box::new(value));
        Self::own(self.value.swap(new, Ordering::SeqCst))
    }

    pub fn take(&self) -> Option<T> {
        Self::own(self.value.swap(std::ptr::null_mut(), Ordering::SeqCst))
    }

    pub fn is_full(&self) -> bool {
        !self.value.load(Ordering::SeqCst).is_null()
    }

    fn own(pointer: *mut T) -> Option<T> {
        // SAFETY: every non-null pointer in the slot came from `Box::into_raw` in `put`, and the
        // swap that removed it from the slot gave it to this caller alone.
        (!pointer.is_null()).then(|| *unsafe { Box::from_raw(pointer) })
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        drop(self.take());
    }
}
