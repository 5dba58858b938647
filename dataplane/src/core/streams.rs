//! The shard's streams, addressed by a small id interned once (at publish,
//! first viewer or replica subscription) instead of an "app/stream" string
//! per frame. An id carries a generation, so a stale id (held by a relay
//! message in flight, or a peer shard's subscriber list) never reaches a
//! newer stream that reused the slot.

use super::stream::Stream;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId {
    idx: u32,
    gen: u32,
}

impl StreamId {
    /// An id no table ever hands out (for tests of stale-id handling).
    pub const DANGLING: StreamId = StreamId { idx: u32::MAX, gen: u32::MAX };
}

struct Slot {
    gen: u32,
    stream: Option<Stream>,
}

#[derive(Default)]
pub struct StreamTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_key: HashMap<String, StreamId>,
}

impl StreamTable {
    pub fn lookup(&self, key: &str) -> Option<StreamId> {
        self.by_key.get(key).copied()
    }

    pub fn get(&self, id: StreamId) -> Option<&Stream> {
        self.slots.get(id.idx as usize).filter(|s| s.gen == id.gen)?.stream.as_ref()
    }

    pub fn get_mut(&mut self, id: StreamId) -> Option<&mut Stream> {
        self.slots.get_mut(id.idx as usize).filter(|s| s.gen == id.gen)?.stream.as_mut()
    }

    /// The stream named `app/name`, created by `make` if absent.
    pub fn intern(&mut self, app: &str, name: &str, make: impl FnOnce() -> Stream) -> StreamId {
        let key = Stream::key_of(app, name);
        if let Some(id) = self.by_key.get(&key) {
            return *id;
        }
        let id = match self.free.pop() {
            Some(idx) => {
                let slot = &mut self.slots[idx as usize];
                slot.stream = Some(make());
                StreamId { idx, gen: slot.gen }
            }
            None => {
                self.slots.push(Slot { gen: 0, stream: Some(make()) });
                StreamId { idx: (self.slots.len() - 1) as u32, gen: 0 }
            }
        };
        self.by_key.insert(key, id);
        id
    }

    pub fn remove(&mut self, id: StreamId) -> Option<Stream> {
        let slot = self.slots.get_mut(id.idx as usize).filter(|s| s.gen == id.gen)?;
        let stream = slot.stream.take()?;
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(id.idx);
        self.by_key.remove(&stream.key());
        Some(stream)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| s.stream.is_some()).map(|(i, s)| StreamId { idx: i as u32, gen: s.gen })
    }

    pub fn iter(&self) -> impl Iterator<Item = (StreamId, &Stream)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.stream.as_ref().map(|st| (StreamId { idx: i as u32, gen: s.gen }, st)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (StreamId, &mut Stream)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.stream.as_mut().map(|st| (StreamId { idx: i as u32, gen: s.gen }, st)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_interned_and_stale_ids_miss() {
        let mut t = StreamTable::default();
        let a = t.intern("live", "a", || Stream::new("live", "a", 1200));
        assert_eq!(t.intern("live", "a", || unreachable!("interned once")), a);
        let b = t.intern("live", "b", || Stream::new("live", "b", 1200));
        assert_ne!(a, b);
        assert_eq!(t.lookup("live/b"), Some(b));
        assert_eq!(t.get(a).map(|s| s.key()), Some("live/a".to_string()));
        assert!(t.remove(a).is_some());
        assert!(t.remove(a).is_none(), "removed once");
        assert!(t.get(a).is_none());
        // The slot is reused by a new stream; the old id must not reach it.
        let c = t.intern("live", "c", || Stream::new("live", "c", 1200));
        assert!(t.get(a).is_none(), "stale id reached a newer stream");
        assert_eq!(t.get(c).map(|s| s.key()), Some("live/c".to_string()));
        assert_eq!(t.len(), 2);
        assert_eq!(t.ids().count(), 2);
        assert!(t.get(StreamId::DANGLING).is_none());
        assert_eq!(t.lookup("live/a"), None);
    }
}
