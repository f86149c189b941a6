"""The ``jupyterhub`` executor: booked interactive sessions on a JupyterHub (see the JupyterHub section of ``hosted/README.md``).

Imported lazily through the ``execplanner.executors`` entry point, so a platform that does not use a
hub pays nothing for it.
"""
