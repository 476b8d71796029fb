//! Owns [`CachePadded`]: a value alone on its own cache lines. Nothing else.

use core::ops::Deref;

/// Aligns and pads `T` to 128 bytes (two 64-byte lines, because adjacent-line
/// prefetchers on x86 pull lines in pairs), so two `CachePadded` values never share
/// a line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CachePadded<T>(pub T);

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
