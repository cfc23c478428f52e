//! A dense table of sessions keyed by slot and generation: a slab (a `Vec` of entries
//! whose vacant ones chain the free list through themselves, so insert and remove touch
//! one entry and two words) with a generation per entry.

use super::handle::SESSION_SLOTS;
use crate::core::{Call, Error, Result};

/// No vacant entry after this one.
const NONE: u16 = u16::MAX;

enum Entry<T> {
    Vacant { next: u16 },
    Occupied(T),
}

struct Slot<T> {
    generation: u32,
    entry: Entry<T>,
}

/// Sessions of one host.
pub(crate) struct SessionTable<T> {
    slots: Vec<Slot<T>>,
    /// The first vacant entry ([`NONE`] if every entry is occupied).
    free: u16,
    live: usize,
}

impl<T> Default for SessionTable<T> {
    fn default() -> Self {
        SessionTable {
            slots: Vec::new(),
            free: NONE,
            live: 0,
        }
    }
}

/// `call` found every session slot of its host in use.
#[cold]
fn too_many_sessions(call: Call) -> Error {
    Error::TooManySessions {
        call: call.name(),
        limit: SESSION_SLOTS,
    }
}

impl<T> SessionTable<T> {
    /// [`Self::insert`] for a Prepare: `TooManySessions` when every slot is used.
    #[inline]
    pub(crate) fn open(&mut self, call: Call, value: T) -> Result<(u8, u32)> {
        self.insert(value).ok_or_else(|| too_many_sessions(call))
    }

    /// Inserts a value; returns its slot and generation, or `None` if all slots are used.
    #[inline]
    pub(crate) fn insert(&mut self, value: T) -> Option<(u8, u32)> {
        let idx = if self.free != NONE {
            let idx = self.free as usize;
            let slot = &mut self.slots[idx];
            let Entry::Vacant { next } = slot.entry else {
                unreachable!("the free list holds vacant entries only")
            };
            self.free = next;
            slot.generation = slot.generation.wrapping_add(1);
            slot.entry = Entry::Occupied(value);
            idx
        } else if self.slots.len() < SESSION_SLOTS {
            self.slots.push(Slot {
                generation: 1,
                entry: Entry::Occupied(value),
            });
            self.slots.len() - 1
        } else {
            return None;
        };
        self.live += 1;
        Some((idx as u8, self.slots[idx].generation))
    }

    /// The value at `slot` if its generation is `generation`.
    #[inline]
    pub(crate) fn get(&self, slot: u8, generation: u32) -> Option<&T> {
        let s = self
            .slots
            .get(slot as usize)
            .filter(|s| s.generation == generation)?;
        match &s.entry {
            Entry::Occupied(v) => Some(v),
            _ => None,
        }
    }

    /// The value at `slot` if its generation is `generation`, mutably.
    #[inline]
    pub(crate) fn get_mut(&mut self, slot: u8, generation: u32) -> Option<&mut T> {
        let s = self
            .slots
            .get_mut(slot as usize)
            .filter(|s| s.generation == generation)?;
        match &mut s.entry {
            Entry::Occupied(v) => Some(v),
            _ => None,
        }
    }

    /// Removes and returns the value at `slot` if its generation is `generation`.
    #[inline]
    pub(crate) fn remove(&mut self, slot: u8, generation: u32) -> Option<T> {
        let next = self.free;
        let Entry::Occupied(v) =
            std::mem::replace(self.vacate(slot, generation)?, Entry::Vacant { next })
        else {
            unreachable!("vacate returns an occupied entry")
        };
        Some(v)
    }

    /// Drops the value at `slot` where it lies (no copy of it is made) if its generation is
    /// `generation`; false if there is none.
    #[inline]
    pub(crate) fn free(&mut self, slot: u8, generation: u32) -> bool {
        let next = self.free;
        match self.vacate(slot, generation) {
            Some(entry) => {
                *entry = Entry::Vacant { next };
                true
            }
            None => false,
        }
    }

    /// The occupied entry at `slot` of generation `generation`, which the caller makes
    /// vacant (pointing at the free list as it was): it becomes the head of the free list.
    #[inline]
    fn vacate(&mut self, slot: u8, generation: u32) -> Option<&mut Entry<T>> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.generation != generation || !matches!(s.entry, Entry::Occupied(_)) {
            return None;
        }
        self.free = slot as u16;
        self.live -= 1;
        Some(&mut s.entry)
    }

    /// Number of live values.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Live values, mutably.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u8, u32, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let g = s.generation;
            match &mut s.entry {
                Entry::Occupied(v) => Some((i as u8, g, v)),
                Entry::Vacant { .. } => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_generation_is_rejected() {
        let mut t = SessionTable::default();
        let (s, g) = t.insert("a").unwrap();
        assert_eq!(t.remove(s, g), Some("a"));
        assert_eq!(t.remove(s, g), None);
        let (s2, g2) = t.insert("b").unwrap();
        assert_eq!(s2, s);
        assert_ne!(g2, g);
        assert_eq!(t.get(s, g), None);
        assert_eq!(t.get(s2, g2), Some(&"b"));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn free_drops_in_place_and_checks_the_generation() {
        let mut t = SessionTable::default();
        let (s, g) = t.insert(String::from("a")).unwrap();
        assert!(!t.free(s, g + 1));
        assert!(t.free(s, g));
        assert!(!t.free(s, g));
        assert_eq!(t.get(s, g), None);
        assert_eq!(t.len(), 0);
        assert_eq!(t.insert(String::from("b")), Some((s, g + 1)));
    }

    #[test]
    fn table_is_bounded() {
        let mut t = SessionTable::default();
        for i in 0..SESSION_SLOTS {
            assert!(t.insert(i).is_some());
        }
        assert!(t.insert(0).is_none());
        // A freed slot is reused, with a new generation; the others stay where they are.
        assert_eq!(t.remove(7, 1), Some(7));
        assert_eq!(t.remove(7, 1), None);
        assert_eq!(t.insert(1000), Some((7, 2)));
        assert_eq!(t.get(7, 1), None);
        assert_eq!(t.get(7, 2), Some(&1000));
        assert_eq!(t.get(8, 1), Some(&8));
        assert_eq!(t.len(), SESSION_SLOTS);
    }

    #[test]
    fn the_free_list_reuses_the_last_freed_slot_first() {
        let mut t = SessionTable::default();
        let a = t.insert('a').unwrap();
        let b = t.insert('b').unwrap();
        let c = t.insert('c').unwrap();
        assert_eq!(t.remove(a.0, a.1), Some('a'));
        assert_eq!(t.remove(c.0, c.1), Some('c'));
        assert_eq!(t.insert('d').unwrap().0, c.0);
        assert_eq!(t.insert('e').unwrap().0, a.0);
        assert_eq!(t.insert('f').unwrap().0, 3);
        let live: Vec<char> = t.iter_mut().map(|(_, _, v)| *v).collect();
        assert_eq!(live, ['e', 'b', 'd', 'f']);
        assert_eq!(t.get(b.0, b.1), Some(&'b'));
    }
}
