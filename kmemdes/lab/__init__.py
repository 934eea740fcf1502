"""``kmemdes lab``: experiments on the real local kernel, written as run directories.

Live-kernel I/O like :mod:`kmemdes.trace.capture` plus run-directory writing: imports ``trace``,
``sim`` (the run-directory writer, the latency histogram) and ``report.stats`` (confidence
intervals); only ``cli`` imports it.

- :mod:`kmemdes.lab.state`    knobs recorded before they change, restored on every exit, leftovers of killed runs
- :mod:`kmemdes.lab.run`      one lab run: watchdog, reservation, sampling, tracing, the run directory
- :mod:`kmemdes.lab.driver`   the cycles (a child process, so it can be captured and killed as a tree)
- :mod:`kmemdes.lab.work`     the built-in measured workloads (THP burst, 4 KiB faults, stream, compile)
- :mod:`kmemdes.lab.ktrace`   kernel latencies from tracepoint pairs in a private ftrace instance
- :mod:`kmemdes.lab.replicas` A B A B replicas and the difference with its 95 % CI
- :mod:`kmemdes.lab.calibrate` the cost model's paths measured on this kernel
"""
