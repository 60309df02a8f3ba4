//! String interning: names repeated across thousands of cached objects (namespaces, zones,
//! hosts, classes) are held once.

use std::{collections::HashSet, sync::Arc};

use parking_lot::Mutex;

/// Interns repeated strings as shared `Arc<str>`.
#[derive(Debug, Default)]
pub struct Interner {
    set: Mutex<HashSet<Arc<str>>>,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn intern(&self, s: &str) -> Arc<str> {
        let mut set = self.set.lock();
        if let Some(a) = set.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        set.insert(a.clone());
        a
    }

    /// Drops strings no longer referenced anywhere else.
    pub fn collect_garbage(&self) {
        self.set.lock().retain(|a| Arc::strong_count(a) > 1);
    }

    /// Number of interned strings.
    #[must_use]
    pub fn len(&self) -> usize {
        self.set.lock().len()
    }

    /// True when nothing is interned.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
