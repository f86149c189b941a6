"""Platform kinds that ship with the project: ``static`` (decides from stated limits) and ``broker``
(asks a remote ExecutionBroker service).

The interface they implement is :mod:`execplanner_widgets.core.platform`; a new kind is one module
registered in the ``execplanner.platforms`` entry-point group.
"""
