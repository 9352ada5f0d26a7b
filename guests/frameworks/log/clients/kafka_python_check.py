#!/usr/bin/env python3
"""kafka-python against the log partition, unmodified.

  produce BOOTSTRAP TOPIC FIRST COUNT     acks=all; prints "acked N"
  consume BOOTSTRAP TOPIC GROUP COUNT     group consume of COUNT records,
                                          commit, print the values in order
"""
import sys
from kafka import KafkaConsumer, KafkaProducer


def produce(bootstrap, topic, first, count):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                      request_timeout_ms=20000, retries=0)
    futures = [p.send(topic, key=b"k%d" % i, value=b"v%d" % i) for i in range(first, first + count)]
    p.flush(timeout=60)
    offsets = [f.get(timeout=30).offset for f in futures]
    assert offsets == sorted(offsets), "offsets out of order"
    p.close()
    print("acked %d" % len(offsets), flush=True)


def consume(bootstrap, topic, group, count):
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=20000, session_timeout_ms=10000,
                      heartbeat_interval_ms=1000)
    got = []
    for m in c:
        got.append(m.value.decode())
        if len(got) == count:
            break
    c.commit()
    committed = c.committed(next(iter(c.assignment())))
    c.close()
    for v in got:
        print(v)
    print("committed %s" % committed, flush=True)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "consume":
        consume(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit("unknown command " + cmd)
