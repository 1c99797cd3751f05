//! Load-balancing algorithms: pure, lock-free pickers built once per configuration load.
//! Today: smooth weighted round-robin and a consistent-hash ring.

pub mod consistent_hashing;
mod hash;
pub mod round_robin;

pub use consistent_hashing::HashRing;
pub use hash::hash_key;
pub use round_robin::WeightedRoundRobin;
