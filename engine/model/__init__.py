"""The domain's vocabulary, pure: who acts (`actors`), what the log holds (`events`), what can go wrong
(`errors`). Every other layer of the engine imports from here; this imports from nowhere else."""
