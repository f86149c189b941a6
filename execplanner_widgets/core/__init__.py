"""The core layer: what every platform implements and what asks them all.

- :mod:`.platform`: the :class:`Platform` interface and its errors;
- :mod:`.federation`: :class:`Federation`, one question to every platform at once;
- :mod:`.config`: the platforms file and the platform kinds registered as entry points;
- :mod:`.jobs`: following an accepted session's run (:func:`follow_job`);
- :mod:`.limits`: stated limits and every way a request goes beyond them.

It imports only the model; platforms, the hosted engine, the kernel client and the server build on it.
"""
