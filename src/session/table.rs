//! A dense table of sessions keyed by slot and generation (slab-style, O(1)).

use super::handle::SESSION_SLOTS;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Sessions of one host.
pub(crate) struct SessionTable<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u8>,
    live: usize,
}

impl<T> Default for SessionTable<T> {
    fn default() -> Self {
        SessionTable {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

impl<T> SessionTable<T> {
    /// Inserts a value; returns its slot and generation, or `None` if all slots are used.
    pub(crate) fn insert(&mut self, value: T) -> Option<(u8, u32)> {
        let idx = match self.free.pop() {
            Some(i) => i as usize,
            None if self.slots.len() < SESSION_SLOTS => {
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                self.slots.len() - 1
            }
            None => return None,
        };
        let slot = &mut self.slots[idx];
        slot.generation = slot.generation.wrapping_add(1);
        slot.value = Some(value);
        self.live += 1;
        Some((idx as u8, slot.generation))
    }

    /// The value at `slot` if its generation is `generation`.
    pub(crate) fn get(&self, slot: u8, generation: u32) -> Option<&T> {
        self.slots
            .get(slot as usize)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.value.as_ref())
    }

    /// The value at `slot` if its generation is `generation`, mutably.
    pub(crate) fn get_mut(&mut self, slot: u8, generation: u32) -> Option<&mut T> {
        self.slots
            .get_mut(slot as usize)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.value.as_mut())
    }

    /// Removes and returns the value at `slot` if its generation is `generation`.
    pub(crate) fn remove(&mut self, slot: u8, generation: u32) -> Option<T> {
        let s = self
            .slots
            .get_mut(slot as usize)
            .filter(|s| s.generation == generation)?;
        let v = s.value.take()?;
        self.free.push(slot);
        self.live -= 1;
        Some(v)
    }

    /// Number of live values.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Live values, mutably.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u8, u32, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let g = s.generation;
            s.value.as_mut().map(|v| (i as u8, g, v))
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
    fn table_is_bounded() {
        let mut t = SessionTable::default();
        for i in 0..SESSION_SLOTS {
            assert!(t.insert(i).is_some());
        }
        assert!(t.insert(0).is_none());
    }
}
