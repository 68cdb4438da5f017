"""Every exception the routilux library raises.

::

    RoutiluxError
     ├── FlowNotFoundError      (also ValueError, LookupError) unknown flow name
     ├── InvalidFlowError       (also ValueError)  bad graph: unknown routine/slot/event, entry
     ├── EmitError              (also RuntimeError) emit outside an activation, unknown event,
     │                                              undeclared parameter
     ├── SlotQueueFullError     (also RuntimeError) an emit would overflow a slot's queue
     ├── ActivationPolicyError  (also ValueError)  a policy returned something unusable
     ├── SerializationError     (also ValueError)  to_dict/from_dict cannot describe the thing
     ├── ResumeError            (also ValueError)  a snapshot does not fit the flow any more
     └── RuntimeStoppedError    (also RuntimeError) exec after shutdown()

The builtin mix-ins let callers that only know the builtin types (``except ValueError``)
keep working.
"""

from __future__ import annotations


class RoutiluxError(Exception):
    """Root of every routilux exception."""


class FlowNotFoundError(RoutiluxError, ValueError, LookupError):
    """No flow is registered under the requested name."""


class InvalidFlowError(RoutiluxError, ValueError):
    """The flow graph is not usable: an unknown routine, slot or event, or no clear entry."""


class EmitError(RoutiluxError, RuntimeError):
    """``Routine.emit`` was called where it cannot route data."""


class SlotQueueFullError(RoutiluxError, RuntimeError):
    """Delivering an emit would exceed a slot's ``max_queue_length``; nothing was dropped."""


class ActivationPolicyError(RoutiluxError, ValueError):
    """An activation policy returned a result the runtime cannot use."""


class SerializationError(RoutiluxError, ValueError):
    """A flow or job state cannot be turned into (or rebuilt from) plain JSON."""


class ResumeError(RoutiluxError, ValueError):
    """A saved job state names routines or slots that the flow no longer has."""


class RuntimeStoppedError(RoutiluxError, RuntimeError):
    """The runtime is shutting down or shut down and accepts no new jobs."""


__all__ = [
    "ActivationPolicyError",
    "EmitError",
    "FlowNotFoundError",
    "InvalidFlowError",
    "ResumeError",
    "RoutiluxError",
    "RuntimeStoppedError",
    "SerializationError",
    "SlotQueueFullError",
]
