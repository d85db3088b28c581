//! The window of requests in flight, by id.

use super::*;

/// Requests in flight by id, in id order. Ids are handed out in order and a request is
/// entered under a fresh one (or put back under its own after a look), so the map is a window
/// of slots from the oldest id in flight: entering appends, finding and removing index, and
/// the window's front moves past the finished. Each slot holds a box (a coordination's state is
/// a few hundred bytes) beside its deadline and class: a long-running request holding the
/// window open costs 24 bytes per later id, not a state, and every request has a deadline of
/// seconds (expired on the tick), so the window spans at most that much of the id stream.
pub(super) type PendingMap = Window<Pending>;

#[derive(Debug)]
pub(super) struct Window<T> {
    /// The id of `slots[0]`.
    pub(super) first: ReqId,
    pub(super) slots: std::collections::VecDeque<Option<Slot<T>>>,
    pub(super) len: usize,
    /// Entries per class (so a look for a class with none is free).
    pub(super) classes: [u32; CLASSES],
    /// At or below every entry's deadline in line: lowered by each entry, set to the earliest
    /// by each walk of [`Window::due`]. While the clock is below it nothing is due, and the
    /// tick does not walk the window (requests end long before their deadlines).
    pub(super) due_floor_ms: u64,
}

/// Classes of window entries (see [`WindowEntry::class`]).
pub(super) const CLASSES: usize = 8;

// A slot of the window (see `PendingMap`): 24 bytes, free or not.
const _: () = assert!(std::mem::size_of::<Option<Slot<Pending>>>() == 24);

/// An entry beside its deadline (as it was entered) and class: the tick finds the due entries,
/// and the entries of one class, by walking these in line instead of every entry's box.
#[derive(Debug)]
pub(super) struct Slot<T> {
    pub(super) due_ms: u64,
    pub(super) class: u8,
    pub(super) entry: Box<T>,
}

/// An entry of a [`Window`]: when it is due (its deadline, which may move later but not
/// earlier while the entry is in the window), and its class (below [`CLASSES`], and which
/// does not change).
pub(super) trait WindowEntry {
    fn due_ms(&self) -> u64;
    fn class(&self) -> u8;
}

impl<T> Default for Window<T> {
    fn default() -> Self {
        Window {
            first: 0,
            slots: Default::default(),
            len: 0,
            classes: [0; CLASSES],
            due_floor_ms: u64::MAX,
        }
    }
}

impl<T: WindowEntry> Window<T> {
    /// Enters `pending` under `req` (replacing what was there).
    pub(super) fn insert(&mut self, req: ReqId, pending: T) {
        self.insert_boxed(req, Box::new(pending));
    }

    /// [`Window::insert`] of an entry in its box (one taken out by [`Window::remove_boxed`]).
    pub(super) fn insert_boxed(&mut self, req: ReqId, pending: Box<T>) {
        if self.slots.is_empty() {
            self.first = req;
        }
        while req < self.first {
            // Put back below the window's front (which moved past it when it was taken out).
            self.slots.push_front(None);
            self.first -= 1;
        }
        let i = usize::try_from(req - self.first).expect("a window of requests fits in memory");
        while self.slots.len() <= i {
            self.slots.push_back(None);
        }
        let slot = Slot {
            due_ms: pending.due_ms(),
            class: pending.class(),
            entry: pending,
        };
        self.due_floor_ms = self.due_floor_ms.min(slot.due_ms);
        self.classes[slot.class as usize] += 1;
        match self.slots[i].replace(slot) {
            None => self.len += 1,
            Some(old) => self.classes[old.class as usize] -= 1,
        }
    }

    pub(super) fn index(&self, req: &ReqId) -> Option<usize> {
        usize::try_from(req.checked_sub(self.first)?).ok()
    }

    pub(super) fn get(&self, req: &ReqId) -> Option<&T> {
        Some(&self.slots.get(self.index(req)?)?.as_ref()?.entry)
    }

    pub(super) fn get_mut(&mut self, req: &ReqId) -> Option<&mut T> {
        let i = self.index(req)?;
        Some(&mut self.slots.get_mut(i)?.as_mut()?.entry)
    }

    pub(super) fn remove(&mut self, req: &ReqId) -> Option<T> {
        self.remove_boxed(req).map(|entry| *entry)
    }

    /// [`Window::remove`], the entry left in its box (to be put back without moving it).
    pub(super) fn remove_boxed(&mut self, req: &ReqId) -> Option<Box<T>> {
        let i = self.index(req)?;
        let slot = self.slots.get_mut(i)?.take()?;
        self.len -= 1;
        self.classes[slot.class as usize] -= 1;
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.first += 1;
        }
        Some(slot.entry)
    }

    /// The entries in id order (the tests compare it with a map's).
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (ReqId, &T)> {
        let first = self.first;
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(i, slot)| Some((first + i as u64, &*slot.as_ref()?.entry)))
    }

    /// The entries of one class, in id order.
    pub(super) fn of_class(&self, class: u8) -> impl Iterator<Item = &T> {
        // None of the class: nothing to walk.
        let walk = if self.count_of(class) == 0 {
            0
        } else {
            self.slots.len()
        };
        self.slots.range(..walk).filter_map(move |slot| match slot {
            Some(slot) if slot.class == class => Some(&*slot.entry),
            _ => None,
        })
    }

    /// How many entries of a class the window holds.
    pub(super) fn count_of(&self, class: u8) -> usize {
        self.classes[class as usize] as usize
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The ids of the entries due at `now_ms` (deadline reached), in id order.
    pub(super) fn due(&mut self, now_ms: u64) -> Vec<ReqId> {
        if now_ms < self.due_floor_ms {
            return Vec::new();
        }
        let mut floor = u64::MAX;
        let mut due = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            // Due ones included: the caller may keep some.
            floor = floor.min(slot.due_ms);
            // The deadline in line is the entry's or earlier (it may have moved later).
            if slot.due_ms <= now_ms && slot.entry.due_ms() <= now_ms {
                due.push(self.first + i as u64);
            }
        }
        self.due_floor_ms = floor;
        due
    }
}
