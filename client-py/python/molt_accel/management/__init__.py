"""Management commands of the molt_accel app: ``molt_worker``, ``molt_status``, ``molt_queries``."""
