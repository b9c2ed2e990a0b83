"""Ring and frame sizes of the demo's worker and of its clients, in one place:
`settings.py` gives them to the workers a Django process spawns and to the client
(`MAX_FRAME_BYTES`), `bench/scripts/serve.py` to the shared worker it starts.

Sized for the largest table the demo sends: `/data/offload?rows=1000000` sends a `sales`
table of about 40.5 MB of Arrow IPC in one frame (docs/data-path.md, "Tables larger than a
ring"). A frame must fit in one ring record, half a ring less 8 bytes, so 128 MiB rings
carry frames up to 64 MiB, the manifest's `settings.data.max_bytes` of a payload. Both
rings of every connection get that size. A memfd's pages are allocated when first touched,
but a ring's writes go round the whole ring, so after 128 MiB of traffic both rings of a
connection are resident; those shared pages count in the RSS of the Django process and of
the worker alike (docs/benchmark.md, "The data path").

Nothing here imports Django: `serve.py` reads it without configuring a site.
"""

#: The data area of each ring of a shared-memory connection (`--ring-bytes`).
RING_BYTES = 128 << 20
#: The largest frame, header included, on both sides and both transports: all a ring carries.
MAX_FRAME_BYTES = RING_BYTES // 2 - 8
#: What the worker is started with, besides its transport and manifest.
WORKER_ARGS = ["--ring-bytes", str(RING_BYTES), "--max-frame-bytes", str(MAX_FRAME_BYTES)]
