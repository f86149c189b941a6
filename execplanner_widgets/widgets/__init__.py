"""The notebook UI: one widget per step of the seeds' conversation, and the app that joins them.

Each step is usable on its own and exposes its result as a traitlet, so a notebook can react to it
(``widget.observe(callback, "selected")``):

=====================  ===============================================================
``ExecutableList``     ``selected`` (ExecutableEntry), ``request``
``ShoppingList``       ``request`` (with the locations given), ``complete``, ``missing``
``ResourceForm``       ``request`` (None while a field is wrong), ``errors``, ``valid``
``OfferBrowser``       ``results``, ``selected``, ``accepted`` (the booked session)
``JobMonitor``         ``session``, ``phase``, ``history``, ``output``
``BookingsView``       ``bookings`` (the user's sessions on every platform)
``PlannerApp``         ``session``; ``show(sidebar=False)``
=====================  ===============================================================
"""

from .app import SIDEBAR_TITLE, PlannerApp, widgets_available
from .bookings import Booking, BookingsView
from .executables import ExecutableList
from .jobs import JobMonitor
from .offers import OfferBrowser
from .resources import ResourceForm
from .shopping import BasketItem, ShoppingList, basket_item
from .timeline import Timeline, timeline

__all__ = [
    "SIDEBAR_TITLE",
    "BasketItem",
    "Booking",
    "BookingsView",
    "ExecutableList",
    "JobMonitor",
    "OfferBrowser",
    "PlannerApp",
    "ResourceForm",
    "ShoppingList",
    "Timeline",
    "basket_item",
    "timeline",
    "widgets_available",
]
