//! Token streams as the trainers read them: a length and a way to copy a window out.
//! Owns the [`TokenSource`] trait and [`Tokens`], the cheap-to-clone handle the
//! schedulers carry into their threads. Must never know where the tokens live beyond
//! that trait: a vector in memory and a memory-mapped token file look the same here.
//!
//! Every reader (the sampler, evaluation, the pre-fetch producer) copies windows with
//! [`TokenSource::read`], so a stream on disk is paged in by whichever thread draws the
//! batch (the pre-fetch producer, in the lock-free scheduler), never loaded whole.

use std::fmt;
use std::sync::Arc;

/// A read-only token stream.
pub trait TokenSource: Send + Sync {
    /// Tokens in the stream.
    fn len(&self) -> usize;

    /// True if the stream has no tokens.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies tokens `start..start + out.len()` into `out`. Callers check the range
    /// against [`TokenSource::len`] first; a range past the end panics (a bug in the
    /// caller, never an input error).
    fn read(&self, start: usize, out: &mut [u32]);
}

impl TokenSource for [u32] {
    fn len(&self) -> usize {
        <[u32]>::len(self)
    }

    fn read(&self, start: usize, out: &mut [u32]) {
        out.copy_from_slice(&self[start..start + out.len()]);
    }
}

impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn read(&self, start: usize, out: &mut [u32]) {
        (**self).read(start, out)
    }
}

impl<T: TokenSource + ?Sized> TokenSource for &T {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn read(&self, start: usize, out: &mut [u32]) {
        (**self).read(start, out)
    }
}

impl TokenSource for Vec<u32> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn read(&self, start: usize, out: &mut [u32]) {
        self.as_slice().read(start, out)
    }
}

/// A shared token stream: in memory or mapped from a file. Cloning shares it.
#[derive(Clone)]
pub struct Tokens(Arc<dyn TokenSource>);

impl Tokens {
    /// Wraps any source.
    pub fn new(source: Arc<dyn TokenSource>) -> Self {
        Tokens(source)
    }

    /// All tokens copied into a vector (for small streams and tests).
    pub fn to_vec(&self) -> Vec<u32> {
        let mut v = vec![0; self.0.len()];
        self.0.read(0, &mut v);
        v
    }
}

impl TokenSource for Tokens {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read(&self, start: usize, out: &mut [u32]) {
        self.0.read(start, out)
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} tokens)", self.0.len())
    }
}

impl From<Vec<u32>> for Tokens {
    fn from(v: Vec<u32>) -> Self {
        Tokens(Arc::new(v))
    }
}

impl From<Arc<[u32]>> for Tokens {
    fn from(v: Arc<[u32]>) -> Self {
        Tokens(Arc::new(v))
    }
}

impl From<&Arc<[u32]>> for Tokens {
    fn from(v: &Arc<[u32]>) -> Self {
        Tokens(Arc::new(Arc::clone(v)))
    }
}

impl From<&[u32]> for Tokens {
    fn from(v: &[u32]) -> Self {
        Tokens(Arc::new(v.to_vec()))
    }
}
