"""The persistent queue: job store, workers, retention."""
