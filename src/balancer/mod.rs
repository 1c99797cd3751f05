//! Load-balancing algorithms: pure, lock-free pickers built once per configuration load.
//! Today: smooth weighted round-robin.

pub mod round_robin;

pub use round_robin::WeightedRoundRobin;
