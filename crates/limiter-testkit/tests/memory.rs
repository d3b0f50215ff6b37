//! The conformance suite on the memory storage, for every strategy, on a
//! manual clock; and through the type-erased `AnyStorage`.

use limiter_core::{AnyStorage, MemoryStorage, StrategyKind};
use limiter_testkit::{Env, conformance_tests};

mod fixed_window {
    use super::*;
    conformance_tests!(env: Env::manual(MemoryStorage::new()), strategy: limiter_core::FixedWindow);
}

mod moving_window {
    use super::*;
    conformance_tests!(env: Env::manual(MemoryStorage::new()), strategy: limiter_core::MovingWindow);
}

mod sliding_window_counter {
    use super::*;
    conformance_tests!(env: Env::manual(MemoryStorage::new()), strategy: limiter_core::SlidingWindowCounter);
}

mod gcra {
    use super::*;
    conformance_tests!(env: Env::manual(MemoryStorage::new()), strategy: limiter_core::Gcra);
}

mod dynamic_moving_window {
    use super::*;
    conformance_tests!(env: Env::manual(AnyStorage::new(MemoryStorage::new())), strategy: StrategyKind::MovingWindow);
}

mod dynamic_gcra {
    use super::*;
    conformance_tests!(env: Env::manual(AnyStorage::new(MemoryStorage::new())), strategy: StrategyKind::Gcra);
}

mod small_bound {
    use super::*;
    // A storage this small evicts while the suite runs its cases: each case
    // touches fewer keys than the bound, so the answers must not change.
    conformance_tests!(
        env: Env::manual(MemoryStorage::builder().max_keys(64).shards(2).build()),
        strategy: limiter_core::SlidingWindowCounter,
    );
}
