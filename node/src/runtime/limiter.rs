//! The memory cap, one limiter for both engines. It remembers that the cap was
//! hit so that the trap which usually follows (Rust and C abort when an
//! allocation fails) is reported as `memory_limit`, not as a plain trap.

/// Denies growing linear memory or tables past the cap, and records it.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    hit: bool,
}

/// Tables hold function references, not data; this bounds them to something
/// no real module needs while keeping a hostile one from exhausting the host.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl MemoryLimiter {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            hit: false,
        }
    }

    /// Whether a memory or table growth was refused.
    pub(crate) fn hit(&self) -> bool {
        self.hit
    }

    fn memory(&mut self, desired: usize, maximum: Option<usize>) -> bool {
        if maximum.is_some_and(|max| desired > max) {
            // The module's own declared maximum: not our cap.
            return false;
        }
        let allow = desired <= self.max_bytes;
        self.hit |= !allow;
        allow
    }

    fn table(&mut self, desired: usize, maximum: Option<usize>) -> bool {
        if maximum.is_some_and(|max| desired > max) {
            return false;
        }
        let allow = desired <= MAX_TABLE_ELEMENTS;
        self.hit |= !allow;
        allow
    }
}

#[cfg(feature = "jit")]
impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.memory(desired, maximum))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.table(desired, maximum))
    }
}

impl wasmi::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, wasmi_core::LimiterError> {
        Ok(self.memory(desired, maximum))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, wasmi_core::LimiterError> {
        Ok(self.table(desired, maximum))
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_a_refused_growth() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory(1 << 19, None));
        assert!(!limiter.hit());
        assert!(!limiter.memory(2 << 20, None));
        assert!(limiter.hit());
    }

    #[test]
    fn the_module_maximum_is_not_our_cap() {
        let mut limiter = MemoryLimiter::new(1 << 30);
        assert!(!limiter.memory(2 << 20, Some(1 << 20)));
        assert!(!limiter.hit());
    }
}
