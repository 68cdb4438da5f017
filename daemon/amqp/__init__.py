"""RabbitMQ side of the daemon: one robust connection, consumers, dead letters, replies.

The connection lives in a receiver process of its own (:mod:`daemon.amqp.receiver`,
driven by :class:`RemoteAmqp`). Nothing outside this package imports aio-pika for
the running service; broker failures surface as
:class:`daemon.errors.BrokerUnavailable`.
"""

from daemon.amqp.consumer import AmqpConsumer, QueueBinding
from daemon.amqp.intake import Intake
from daemon.amqp.publisher import Publisher, ReplyTarget, result_body
from daemon.amqp.remote import RemoteAmqp

__all__ = [
    "AmqpConsumer",
    "Intake",
    "Publisher",
    "QueueBinding",
    "RemoteAmqp",
    "ReplyTarget",
    "result_body",
]
