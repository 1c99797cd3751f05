//! Load-balancing algorithms: pure, lock-free pickers built once per configuration load.
//! Smooth weighted round-robin, weighted least-connections, a consistent-hash ring, power of two
//! choices over peak-EWMA latency, and weighted random.

pub mod consistent_hashing;
mod hash;
pub mod latency;
pub mod least_connections;
pub mod random;
mod rng;
pub mod round_robin;

pub use consistent_hashing::HashRing;
pub use hash::hash_key;
pub use latency::{Latency, PeakEwma};
pub use least_connections::LeastConnections;
pub use random::WeightedRandom;
pub use round_robin::WeightedRoundRobin;
