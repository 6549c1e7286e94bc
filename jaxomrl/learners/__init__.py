"""Pure-functional learners: ``init(key, ...) -> state`` and ``update(state, batch, key) -> (state, metrics)``."""
