//! The memory cap, one limiter for both engines. The cap covers all of a
//! run's memories and tables together (a module with several memories, which
//! both engines run, gets no more than one with a single memory); tables
//! count at [`TABLE_ELEMENT_BYTES`] an element. It remembers that the cap was
//! hit so that the trap which usually follows (Rust and C abort when an
//! allocation fails) is reported as `memory_limit`, not as a plain trap.

/// Denies growing linear memories or tables past the cap, and records it.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    /// Bytes of all memories and tables now (as the engine granted them).
    used: usize,
    hit: bool,
}

/// What a table element counts for against the cap: a reference, as the
/// engines store it on a 64-bit host (the same on every host, so that a
/// module ends alike everywhere).
const TABLE_ELEMENT_BYTES: usize = 8;

/// Memories and tables a module may have on wasmi (wasmtime's own limits
/// are as many; no real module has more than a few).
const MAX_MEMORIES: usize = 100;
const MAX_TABLES: usize = 100;

/// Tables hold function references, not data; this bounds them to something
/// no real module needs while keeping a hostile one from exhausting the host.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl MemoryLimiter {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            used: 0,
            hit: false,
        }
    }

    /// Whether a memory or table growth was refused.
    pub(crate) fn hit(&self) -> bool {
        self.hit
    }

    /// Grants growing something of `current` bytes to `desired` if all
    /// memories and tables together stay within the cap.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        let allow = total <= self.max_bytes;
        if allow {
            self.used = total;
        }
        self.hit |= !allow;
        allow
    }

    fn memory(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> bool {
        if maximum.is_some_and(|max| desired > max) {
            // The module's own declared maximum: not our cap.
            return false;
        }
        self.grow(current, desired)
    }

    fn table(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> bool {
        if maximum.is_some_and(|max| desired > max) {
            return false;
        }
        if desired > MAX_TABLE_ELEMENTS {
            self.hit = true;
            return false;
        }
        self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }
}

#[cfg(feature = "jit")]
impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.memory(current, desired, maximum))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.table(current, desired, maximum))
    }
}

impl wasmi::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, wasmi_core::LimiterError> {
        Ok(self.memory(current, desired, maximum))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, wasmi_core::LimiterError> {
        Ok(self.table(current, desired, maximum))
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_a_refused_growth() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory(0, 1 << 19, None));
        assert!(!limiter.hit());
        assert!(!limiter.memory(1 << 19, 2 << 20, None));
        assert!(limiter.hit());
    }

    #[test]
    fn the_cap_covers_all_memories_and_tables_together() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory(0, 1 << 19, None));
        assert!(limiter.memory(0, 1 << 18, None));
        // The first grows to 3/4 MiB: 1 MiB in all.
        assert!(limiter.memory(1 << 19, 3 << 18, None));
        assert!(!limiter.hit());
        assert!(!limiter.memory(1 << 18, 1 << 19, None));
        assert!(limiter.hit());
        // A table of one element more does not fit either.
        assert!(!limiter.table(0, 1, None));
    }

    #[test]
    fn the_module_maximum_is_not_our_cap() {
        let mut limiter = MemoryLimiter::new(1 << 30);
        assert!(!limiter.memory(0, 2 << 20, Some(1 << 20)));
        assert!(!limiter.hit());
    }
}
