"""Management commands of the molt_accel app: ``molt_worker`` and ``molt_status``."""
