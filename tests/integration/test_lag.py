"""Consumer lag as an operator reads it: messages a stage's group has not committed, per topic and partition."""

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra import metrics
from streams.lag import Group, LagSampler


async def _gauge(stage: str, topic: str, partition: int) -> float:
    return metrics.CONSUMER_LAG.labels(stage, topic, str(partition))._value.get()


async def test_lag_counts_uncommitted_messages_and_drops_as_the_group_commits(broker, unique):
    topic = f"lag{unique}.requests"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, key=f"r{i}".encode(), value=b"{}", partition=0)
        await producer.send_and_wait(topic, key=b"r9", value=b"{}", partition=1)
    finally:
        await producer.stop()

    group = f"lag-{unique}-planner"
    sampler = await LagSampler(broker.bootstrap, [Group("planner", group, (topic,))], interval_s=0).start()
    try:
        # Nothing committed yet: the group would start at the first message, so everything is lag.
        assert await sampler.sample() == {("planner", topic, 0): 3, ("planner", topic, 1): 1}
        assert await _gauge("planner", topic, 0) == 3

        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
            await consumer.commit({TopicPartition(topic, 0): 2, TopicPartition(topic, 1): 1})
        finally:
            await consumer.stop()
        assert await sampler.sample() == {("planner", topic, 0): 1, ("planner", topic, 1): 0}
        assert await _gauge("planner", topic, 0) == 1
    finally:
        await sampler.aclose()
