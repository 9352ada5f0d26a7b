//! Per-core bookkeeping shared by the policies: which task each core runs and
//! since when. It owns no policy decision; a policy stores what it needs to
//! decide (class, deadline, mode) in its own slot type `S`.
use crate::{CoreId, TaskId, MAX_CORES};

/// What a policy remembers about the task running on one core.
pub(crate) trait Slot: Copy {
    fn task(&self) -> TaskId;
}

pub(crate) struct CoreTable<S: Slot> {
    cores: usize,
    slots: [Option<S>; MAX_CORES],
}

impl<S: Slot> CoreTable<S> {
    pub(crate) fn new(cores: usize) -> Self {
        Self {
            cores,
            slots: [None; MAX_CORES],
        }
    }

    pub(crate) fn cores(&self) -> usize {
        self.cores
    }

    pub(crate) fn get(&self, core: CoreId) -> Option<&S> {
        self.slots[..self.cores][core].as_ref()
    }

    pub(crate) fn set(&mut self, core: CoreId, slot: S) {
        let entry = &mut self.slots[..self.cores][core];
        debug_assert!(entry.is_none(), "pick_next on a busy core");
        *entry = Some(slot);
    }

    /// Clears `core`, checking that it ran `task` (a runtime protocol bug otherwise).
    pub(crate) fn take(&mut self, core: CoreId, task: TaskId) -> Option<S> {
        let entry = &mut self.slots[..self.cores][core];
        debug_assert_eq!(
            entry.map(|s| s.task()),
            Some(task),
            "runtime reported the wrong task"
        );
        entry.take()
    }

    /// Cores that run nothing (idle, or between a preemption and `pick_next`).
    pub(crate) fn free(&self) -> usize {
        self.slots[..self.cores]
            .iter()
            .filter(|s| s.is_none())
            .count()
    }

    pub(crate) fn running(&self) -> impl Iterator<Item = (CoreId, &S)> {
        self.slots[..self.cores]
            .iter()
            .enumerate()
            .filter_map(|(c, s)| s.as_ref().map(|s| (c, s)))
    }
}
