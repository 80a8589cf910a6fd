#!/usr/bin/env python3
"""Client round trips for scripts/smoke.sh (one check per run; exit status 0 = passed).

  smoke_clients.py confluent BOOTSTRAP CODEC [COUNT]   confluent-kafka (librdkafka) producer with
                                                      compression.type=CODEC, read back with an
                                                      assign()ed consumer from the beginning
  smoke_clients.py kafka-python BOOTSTRAP [COUNT]      the pure-Python client, same round trip
  smoke_clients.py elect-leaders BOOTSTRAP             confluent-kafka's AdminClient.elect_leaders
                                                      on one node: every partition already has
                                                      its preferred leader

Each run uses a topic of its own, auto-created by the broker on the first produce, and checks
that every record comes back exactly once, with its key, value and headers, in produce order
within each partition.
"""

import sys
import time
import uuid

TIMEOUT_S = 60


def fail(msg):
    print(f"smoke_clients: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def payload(tag, i):
    # Compressible but not constant: a prefix that names the record, then a repeated pattern.
    return f"{tag}-{i:06d}-".encode() + (b"skein-smoke-payload-%d-" % (i % 7)) * 8


def check_partitions(got, want_by_key):
    """got: {partition: [(offset, key, value, headers)]} in consume order."""
    seen = {}
    for part, recs in got.items():
        last_offset = -1
        last_index = -1
        for offset, key, value, headers in recs:
            if offset <= last_offset:
                fail(f"partition {part}: offset {offset} after {last_offset}")
            last_offset = offset
            if key in seen:
                fail(f"duplicate record key {key!r} (partition {part} offset {offset})")
            if key not in want_by_key:
                fail(f"unexpected record key {key!r} (partition {part} offset {offset})")
            index, want_value, want_headers = want_by_key[key]
            if value != want_value:
                fail(f"key {key!r}: value differs ({len(value or b'')} bytes vs {len(want_value)})")
            if headers != want_headers:
                fail(f"key {key!r}: headers {headers!r}, expected {want_headers!r}")
            if index <= last_index:
                fail(f"partition {part}: record #{index} after #{last_index} (reordered)")
            last_index = index
            seen[key] = part
    missing = len(want_by_key) - len(seen)
    if missing:
        fail(f"{missing} of {len(want_by_key)} records missing")


def run_confluent(bootstrap, codec, count):
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

    topic = f"smoke-{codec}-{uuid.uuid4().hex[:8]}"
    errors = []
    delivered = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")
        else:
            delivered.append((msg.partition(), msg.offset()))

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "compression.type": codec,
        "linger.ms": 20,
        "acks": "all",
        "message.timeout.ms": TIMEOUT_S * 1000,
    })
    want = {}
    for i in range(count):
        key = f"k{i:06d}".encode()
        value = payload(codec, i)
        headers = [("i", str(i).encode())] if i % 10 == 0 else None
        want[key] = (i, value, headers)
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers,
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(TIMEOUT_S)
    if remaining:
        fail(f"{remaining} records not delivered within {TIMEOUT_S}s")
    if errors:
        fail(f"{len(errors)} delivery errors, first: {errors[0]}")
    if len(delivered) != count:
        fail(f"{len(delivered)} delivery reports for {count} records")

    partitions = sorted({p for p, _ in delivered})
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"smoke-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "check.crcs": True,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    got = {p: [] for p in partitions}
    n = 0
    deadline = time.monotonic() + TIMEOUT_S
    while n < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail(f"consume error: {msg.error()}")
        hdrs = msg.headers()
        got[msg.partition()].append((msg.offset(), msg.key(), msg.value(),
                                     [(k, v) for k, v in hdrs] if hdrs else None))
        n += 1
    # A little longer, to catch duplicates past the expected count.
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            fail(f"extra record after {count}: partition {msg.partition()} offset {msg.offset()}")
    consumer.close()
    check_partitions(got, want)
    print(f"smoke_clients: {codec}: {count} records over partitions {partitions} ok")


def run_kafka_python(bootstrap, count):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = f"smoke-kafka-python-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             request_timeout_ms=TIMEOUT_S * 1000)
    want = {}
    futures = []
    for i in range(count):
        key = f"k{i:06d}".encode()
        value = payload("kp", i)
        want[key] = (i, value, None)
        futures.append(producer.send(topic, key=key, value=value))
    producer.flush(TIMEOUT_S)
    partitions = set()
    for fut in futures:
        md = fut.get(timeout=TIMEOUT_S)
        partitions.add(md.partition)
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got = {p: [] for p in partitions}
    n = 0
    deadline = time.monotonic() + TIMEOUT_S
    while n < count and time.monotonic() < deadline:
        for tp, recs in consumer.poll(timeout_ms=500).items():
            for r in recs:
                got[tp.partition].append((r.offset, r.key, r.value, r.headers or None))
                n += 1
    consumer.close()
    check_partitions(got, want)
    print(f"smoke_clients: kafka-python: {count} records over partitions {sorted(partitions)} ok")


def run_elect_leaders(bootstrap):
    from confluent_kafka import ElectionType, KafkaError, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"smoke-elect-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(TIMEOUT_S)
    asked = [TopicPartition(topic, 0), TopicPartition(topic, 1), TopicPartition(topic, 9)]
    want = [KafkaError.ELECTION_NOT_NEEDED, KafkaError.ELECTION_NOT_NEEDED,
            KafkaError.UNKNOWN_TOPIC_OR_PART]
    got = admin.elect_leaders(ElectionType.PREFERRED, asked).result(TIMEOUT_S)
    by_partition = {(k.topic, k.partition): e for k, e in got.items()}
    for tp, code in zip(asked, want):
        key = (tp.topic, tp.partition)
        if key not in by_partition:
            fail(f"elect_leaders: no result for {key}")
        err = by_partition[key]
        if err is None or err.code() != code:
            fail(f"elect_leaders {key}: {err}, want {KafkaError(code)}")
    every = admin.elect_leaders(ElectionType.PREFERRED, None).result(TIMEOUT_S)
    if every:
        fail(f"elect_leaders of every partition listed {every}; nothing needed electing")
    admin.delete_topics([topic])[topic].result(TIMEOUT_S)
    print(f"smoke_clients: elect_leaders answered {len(asked)} partitions as Kafka does")


def main(argv):
    if len(argv) >= 3 and argv[0] == "confluent":
        run_confluent(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 1000)
    elif len(argv) >= 2 and argv[0] == "kafka-python":
        run_kafka_python(argv[1], int(argv[2]) if len(argv) > 2 else 100)
    elif len(argv) == 2 and argv[0] == "elect-leaders":
        run_elect_leaders(argv[1])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
