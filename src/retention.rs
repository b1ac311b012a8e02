//! Storage limitation: the retention sweeper.
