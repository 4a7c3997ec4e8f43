"""Library adapters: where Nightjar replaces part of a library's stock behaviour.

Each module plugs into one library's own extension point (a Feast store or engine type named
in ``feature_repo/feature_store.yaml``, an Evidently metric, a GX view class) and says in its
docstring what it replaces, why (the measured figure), the library version it was written for
and how to switch back to stock; ``docs/adapters.md`` lists them. They depend on the libraries
and ``jobs.common`` only, never on the stages that use them.
"""
