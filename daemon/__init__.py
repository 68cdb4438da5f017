"""The Routilux daemon: runs registered flows from RabbitMQ queues and timers, durably.

Entry point: ``routilux-daemon`` (:func:`daemon.cli.main`). The package exports
nothing else on purpose; components are wired by ``daemon.service``.
"""

__all__: list[str] = []
