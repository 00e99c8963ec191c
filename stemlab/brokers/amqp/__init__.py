"""`amqp://` and `amqps://`: the RabbitMQ adapter (needs the `amqp` extra: pika).

User, password and vhost come from the URL (`amqp://user:pass@host:5672/vhost`);
`namespace=` prefixes every queue and exchange. The design (reused lease-slot queues,
tokens fencing settles, wait queues for delays, the namespace lock) is in docs/rabbitmq.md.
"""

from stemlab.brokers.amqp.broker import AmqpBroker

__all__ = ["AmqpBroker"]
