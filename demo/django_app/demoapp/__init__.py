"""The demo app: `/baseline` runs the demo contract in CPython, `/offload` sends it to the worker."""
