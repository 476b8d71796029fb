//! The two queues of the seed design, generic over [`Platform`](crate::sync::Platform).
//!
//! Owns: [`WorkQueue`] (bounded lock-free MPMC, the seed's work queue) and
//! [`PrefetchQueue`] (single producer thread feeding one consumer, the seed's batch
//! pre-fetch). Must never know what the items are: no model, batch or tensor types.

mod prefetch;
mod work;

pub use prefetch::DEFAULT_CAPACITY as PREFETCH_DEFAULT_CAPACITY;
pub use work::DEFAULT_CAPACITY as WORK_DEFAULT_CAPACITY;

pub use prefetch::{PrefetchError, PrefetchQueue, Producer, Stopped};
pub use work::{Closed, PopError, PushError, WorkQueue};
