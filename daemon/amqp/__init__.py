"""RabbitMQ side of the daemon: one robust connection, consumers, dead letters, replies.

Nothing outside this package imports aio-pika for the running service; broker
failures surface as :class:`daemon.errors.BrokerUnavailable`.
"""

from daemon.amqp.consumer import AmqpConsumer, QueueBinding
from daemon.amqp.intake import Intake
from daemon.amqp.publisher import Publisher, ReplyTarget, result_body

__all__ = ["AmqpConsumer", "Intake", "Publisher", "QueueBinding", "ReplyTarget", "result_body"]
