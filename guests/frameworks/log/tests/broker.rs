//! The broker as a state machine, driven with requests the `kafka-protocol`
//! crate encodes: version negotiation, produce with each acks, stored bytes
//! served as received, long polls, the consumer group coordinator
//! (rebalances, session expiry, generations), durable committed offsets,
//! device failure, and hostile frames.

use bytes::Bytes;
use hallows_log::batch;
use hallows_log::dev::MemDisk;
use hallows_log::proto::err;
use hallows_log::{Broker, BrokerConfig, Log, LogConfig, Reply};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use proptest::prelude::*;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn frame<T: Encodable>(key: i16, v: i16, corr: i32, body: &T) -> Vec<u8> {
    let mut b = Vec::new();
    RequestHeader::default().with_request_api_key(key).with_request_api_version(v).with_correlation_id(corr).with_client_id(Some(s("test"))).encode(&mut b, 1).unwrap();
    body.encode(&mut b, v).unwrap();
    b
}

fn decode<T: Decodable>(resp: &[u8], v: i16, corr: i32) -> T {
    assert_eq!(i32::from_be_bytes(resp[..4].try_into().unwrap()) as usize, resp.len() - 4);
    assert_eq!(i32::from_be_bytes(resp[4..8].try_into().unwrap()), corr);
    let mut rest = &resp[8..];
    let m = T::decode(&mut rest, v).unwrap();
    assert!(rest.is_empty());
    m
}

fn broker() -> Broker<MemDisk> {
    let log = Log::open(MemDisk::new(4 << 20), LogConfig { segment_bytes: 64 * 1024, ..LogConfig::default() }).unwrap();
    Broker::new(log, BrokerConfig::default())
}

/// Handles a request and, if it waits, polls at `now` until it is done.
fn call(b: &mut Broker<MemDisk>, f: &[u8], now: i64) -> Vec<u8> {
    match b.handle(f, now) {
        Reply::Now(r) => r,
        Reply::Wait(t) => {
            b.poll(now);
            b.take(t).expect("done after one poll")
        }
        r => panic!("unexpected {r:?}"),
    }
}

fn records(vals: &[&str]) -> Vec<u8> {
    let kv: Vec<batch::KeyValue> = vals.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    batch::encode(0, 1000, &kv)
}

fn produce_req(topic: &str, set: Vec<u8>, acks: i16) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(1000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(s(topic)))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from(set)))])])
}

fn fetch_req(topic: &str, offset: i64, wait: i32, min: i32) -> FetchRequest {
    FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(wait).with_min_bytes(min).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
        .with_topic(TopicName(s(topic)))
        .with_partitions(vec![FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20)])])
}

fn create(b: &mut Broker<MemDisk>, topic: &str) {
    let m: MetadataResponse = decode(&call(b, &frame(3, 8, 1, &MetadataRequest::default().with_topics(Some(vec![kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(topic))))])).with_allow_auto_topic_creation(true)), 0), 8, 1);
    assert_eq!(m.topics[0].error_code, 0, "auto-created");
}

#[test]
fn version_negotiation() {
    let mut b = broker();
    // ApiVersions v3 (flexible, newer than served): the v0 answer with
    // UNSUPPORTED_VERSION and the ranges, as Kafka answers.
    let f = frame(18, 3, 9, &ApiVersionsRequest::default().with_client_software_name(s("x")).with_client_software_version(s("1")));
    let m: ApiVersionsResponse = decode(&call(&mut b, &f, 0), 0, 9);
    assert_eq!(m.error_code, err::UNSUPPORTED_VERSION);
    let produce = m.api_keys.iter().find(|k| k.api_key == 0).unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 8));
    let m: ApiVersionsResponse = decode(&call(&mut b, &frame(18, 2, 10, &ApiVersionsRequest::default()), 0), 2, 10);
    assert_eq!(m.error_code, 0);
    // Other APIs outside their range: the connection is closed (Kafka does).
    assert_eq!(b.handle(&frame(0, 2, 1, &produce_req("t", records(&["a"]), 1)), 0), Reply::Close);
    assert_eq!(b.handle(&frame(3, 9, 1, &MetadataRequest::default()), 0), Reply::Close);
    assert_eq!(b.handle(&frame(22, 0, 1, &InitProducerIdRequest::default()), 0), Reply::Close);
}

#[test]
fn produce_each_acks_and_fetch_serves_the_bytes_as_received() {
    let mut b = broker();
    create(&mut b, "t");
    let sent = records(&["one", "two", "three"]);
    // acks=all waits for the group commit.
    let f = frame(0, 8, 2, &produce_req("t", sent.clone(), -1));
    let Reply::Wait(t) = b.handle(&f, 0) else { panic!("acks=all waits for the flush") };
    assert!(b.take(t).is_none());
    b.poll(0);
    let m: ProduceResponse = decode(&b.take(t).unwrap(), 8, 2);
    let p = &m.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    // acks=0: no answer at all; acks=1 like all here (one replica).
    assert_eq!(b.handle(&frame(0, 8, 3, &produce_req("t", records(&["four"]), 0)), 0), Reply::Silent);
    let m: ProduceResponse = decode(&call(&mut b, &frame(0, 3, 4, &produce_req("t", records(&["five"]), 1)), 0), 3, 4);
    assert_eq!(m.responses[0].partition_responses[0].base_offset, 4);
    // Fetch v11: the stored batch is the batch sent, base offset aside.
    let m: FetchResponse = decode(&call(&mut b, &frame(1, 11, 5, &fetch_req("t", 0, 0, 1)), 0), 11, 5);
    let p = &m.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 5));
    let got = p.records.clone().unwrap();
    let first = &got[..sent.len()];
    assert_eq!(&first[8..12], &sent[8..12]);
    assert_eq!(&first[16..], &sent[16..], "served without re-encoding");
    assert_eq!(batch::split(&got).unwrap().len(), 3);
    // Errors in Kafka's own form.
    let mut bad = records(&["x"]);
    let n = bad.len();
    bad[n - 1] ^= 1;
    let m: ProduceResponse = decode(&call(&mut b, &frame(0, 8, 6, &produce_req("t", bad, -1)), 0), 8, 6);
    assert_eq!(m.responses[0].partition_responses[0].error_code, err::CORRUPT_MESSAGE);
    let m: ProduceResponse = decode(&call(&mut b, &frame(0, 8, 7, &produce_req("nope", records(&["x"]), -1)), 0), 8, 7);
    assert_eq!(m.responses[0].partition_responses[0].error_code, err::UNKNOWN_TOPIC_OR_PARTITION);
    let m: ProduceResponse = decode(&call(&mut b, &frame(0, 8, 8, &produce_req("t", records(&["x"]), 5)), 0), 8, 8);
    assert_eq!(m.responses[0].partition_responses[0].error_code, err::INVALID_REQUIRED_ACKS);
    let m: FetchResponse = decode(&call(&mut b, &frame(1, 4, 9, &fetch_req("t", 99, 0, 1)), 0), 4, 9);
    assert_eq!(m.responses[0].partitions[0].error_code, err::OFFSET_OUT_OF_RANGE);
    assert_eq!(b.log.offsets("t", 0).unwrap().log_end, 5, "refused batches were not appended");
}

#[test]
fn fetch_long_polls_until_data_or_max_wait() {
    let mut b = broker();
    create(&mut b, "t");
    let Reply::Wait(t) = b.handle(&frame(1, 11, 1, &fetch_req("t", 0, 500, 1)), 1000) else { panic!("nothing yet: the fetch waits") };
    b.poll(1100);
    assert!(b.take(t).is_none(), "still waiting at 100 ms");
    let _ = call(&mut b, &frame(0, 8, 2, &produce_req("t", records(&["hello"]), -1)), 1200);
    b.poll(1200);
    let m: FetchResponse = decode(&b.take(t).expect("woken by the append"), 11, 1);
    assert_eq!(batch::decode(&m.responses[0].partitions[0].records.clone().unwrap()).unwrap()[0].value.as_deref(), Some(&b"hello"[..]));
    // Nothing comes: answered empty at max_wait.
    let Reply::Wait(t) = b.handle(&frame(1, 11, 3, &fetch_req("t", 1, 500, 1)), 2000) else { panic!() };
    b.poll(2499);
    assert!(b.take(t).is_none());
    b.poll(2500);
    let m: FetchResponse = decode(&b.take(t).unwrap(), 11, 3);
    assert_eq!(m.responses[0].partitions[0].records.as_deref(), Some(&[][..]));
}

fn join(b: &mut Broker<MemDisk>, member: &str, now: i64) -> Reply {
    let q = JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(6000)
        .with_rebalance_timeout_ms(3000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(Bytes::from_static(b"meta"))]);
    b.handle(&frame(11, 5, 1, &q), now)
}

fn joined(b: &mut Broker<MemDisk>, t: u64) -> JoinGroupResponse {
    decode(&b.take(t).expect("join answered"), 5, 1)
}

fn member_id(b: &mut Broker<MemDisk>, now: i64) -> String {
    let Reply::Now(r) = join(b, "", now) else { panic!("a new member is answered at once") };
    let m: JoinGroupResponse = decode(&r, 5, 1);
    assert_eq!(m.error_code, err::MEMBER_ID_REQUIRED);
    m.member_id.to_string()
}

fn sync(b: &mut Broker<MemDisk>, member: &str, gen: i32, assign: &[(&str, &[u8])], now: i64) -> Reply {
    let q = SyncGroupRequest::default().with_group_id(GroupId(s("g"))).with_generation_id(gen).with_member_id(s(member)).with_assignments(
        assign.iter().map(|(m, a)| SyncGroupRequestAssignment::default().with_member_id(s(m)).with_assignment(Bytes::copy_from_slice(a))).collect(),
    );
    b.handle(&frame(14, 3, 1, &q), now)
}

fn heartbeat(b: &mut Broker<MemDisk>, member: &str, gen: i32, now: i64) -> i16 {
    let q = HeartbeatRequest::default().with_group_id(GroupId(s("g"))).with_generation_id(gen).with_member_id(s(member));
    let m: HeartbeatResponse = decode(&call(b, &frame(12, 3, 1, &q), now), 3, 1);
    m.error_code
}

fn commit(b: &mut Broker<MemDisk>, member: &str, gen: i32, offset: i64, now: i64) -> i16 {
    let q = OffsetCommitRequest::default().with_group_id(GroupId(s("g"))).with_generation_id_or_member_epoch(gen).with_member_id(s(member)).with_topics(vec![
        OffsetCommitRequestTopic::default().with_name(TopicName(s("t"))).with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset)]),
    ]);
    let m: OffsetCommitResponse = decode(&call(b, &frame(8, 7, 1, &q), now), 7, 1);
    m.topics[0].partitions[0].error_code
}

fn committed(b: &mut Broker<MemDisk>) -> i64 {
    let q = OffsetFetchRequest::default().with_group_id(GroupId(s("g"))).with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(TopicName(s("t"))).with_partition_indexes(vec![0])]));
    let m: OffsetFetchResponse = decode(&call(b, &frame(9, 5, 1, &q), 0), 5, 1);
    m.topics[0].partitions[0].committed_offset
}

#[test]
fn consumer_group_rebalances_expires_and_commits_durably() {
    let mut b = broker();
    create(&mut b, "t");
    let a = member_id(&mut b, 0);
    let Reply::Wait(ta) = join(&mut b, &a, 0) else { panic!() };
    b.poll(0);
    let ja = joined(&mut b, ta);
    assert_eq!((ja.error_code, ja.generation_id, ja.leader.as_str(), ja.members.len()), (0, 1, a.as_str(), 1));
    let Reply::Wait(t) = sync(&mut b, &a, 1, &[(&a, b"all")], 0) else { panic!() };
    let m: SyncGroupResponse = decode(&b.take(t).unwrap(), 3, 1);
    assert_eq!((m.error_code, &m.assignment[..]), (0, &b"all"[..]));
    assert_eq!(heartbeat(&mut b, &a, 1, 100), 0);
    assert_eq!(commit(&mut b, &a, 1, 7, 100), 0);
    assert_eq!(commit(&mut b, &a, 0, 8, 100), err::ILLEGAL_GENERATION);
    assert_eq!(commit(&mut b, "stranger", 1, 8, 100), err::UNKNOWN_MEMBER_ID);
    assert_eq!(committed(&mut b), 7);
    // A second member: the first learns of the rebalance by heartbeat.
    let c = member_id(&mut b, 200);
    let Reply::Wait(tc) = join(&mut b, &c, 200) else { panic!() };
    b.poll(200);
    assert!(b.take(tc).is_none(), "waits for the known member to rejoin");
    assert_eq!(heartbeat(&mut b, &a, 1, 300), err::REBALANCE_IN_PROGRESS);
    assert_eq!(commit(&mut b, &a, 1, 9, 300), err::REBALANCE_IN_PROGRESS);
    let Reply::Wait(ta) = join(&mut b, &a, 300) else { panic!() };
    b.poll(300);
    let (ja, jc) = (joined(&mut b, ta), joined(&mut b, tc));
    assert_eq!((ja.generation_id, jc.generation_id), (2, 2));
    assert_eq!((ja.members.len(), jc.members.len()), (2, 0), "only the leader gets the members");
    // The follower's sync waits for the leader's assignment.
    let Reply::Wait(sc) = sync(&mut b, &c, 2, &[], 300) else { panic!() };
    assert!(b.take(sc).is_none());
    let Reply::Wait(sa) = sync(&mut b, &a, 2, &[(&a, b"p0"), (&c, b"p1")], 300) else { panic!() };
    let mc: SyncGroupResponse = decode(&b.take(sc).unwrap(), 3, 1);
    let ma: SyncGroupResponse = decode(&b.take(sa).unwrap(), 3, 1);
    assert_eq!((&ma.assignment[..], &mc.assignment[..]), (&b"p0"[..], &b"p1"[..]));
    // `a` goes silent past its session timeout: `c` is told to rejoin and
    // makes generation 3 alone.
    assert_eq!(heartbeat(&mut b, &c, 2, 5000), 0);
    b.poll(6400);
    assert_eq!(heartbeat(&mut b, &c, 2, 6400), err::REBALANCE_IN_PROGRESS);
    let Reply::Wait(tc) = join(&mut b, &c, 6400) else { panic!() };
    b.poll(6400);
    let jc = joined(&mut b, tc);
    assert_eq!((jc.generation_id, jc.leader.as_str(), jc.members.len()), (3, c.as_str(), 1));
    assert_eq!(heartbeat(&mut b, &a, 2, 6500), err::UNKNOWN_MEMBER_ID);
    // Committed offsets survive the log's restart.
    let disk = b.into_log().into_device();
    let log = Log::open(disk, LogConfig { segment_bytes: 64 * 1024, ..LogConfig::default() }).unwrap();
    let mut b = Broker::new(log, BrokerConfig::default());
    assert_eq!(committed(&mut b), 7);
}

#[test]
fn a_failed_device_fails_requests_in_kafka_form() {
    let mut b = broker();
    create(&mut b, "t");
    b.log.device_mut().fail_at_flush();
    let f = frame(0, 8, 2, &produce_req("t", records(&["x"]), -1));
    let m: ProduceResponse = decode(&call(&mut b, &f, 0), 8, 2);
    assert_eq!(m.responses[0].partition_responses[0].error_code, err::KAFKA_STORAGE_ERROR);
    assert!(b.failed());
    let m: ProduceResponse = decode(&call(&mut b, &f, 0), 8, 2);
    assert_eq!(m.responses[0].partition_responses[0].error_code, err::KAFKA_STORAGE_ERROR);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Random frames, and valid frames with bytes flipped or cut: the broker
    /// answers, closes, or waits; it never panics or loops.
    #[test]
    fn hostile_frames_never_panic(garbage in proptest::collection::vec(any::<u8>(), 0..300), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>(), which in 0usize..6) {
        let mut b = broker();
        create(&mut b, "t");
        let _ = b.handle(&garbage, 0);
        let valid = [
            frame(0, 8, 1, &produce_req("t", records(&["a", "b"]), -1)),
            frame(1, 11, 1, &fetch_req("t", 0, 100, 1)),
            frame(3, 8, 1, &MetadataRequest::default()),
            frame(11, 5, 1, &JoinGroupRequest::default().with_group_id(GroupId(s("g"))).with_session_timeout_ms(6000).with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range"))])),
            frame(8, 7, 1, &OffsetCommitRequest::default().with_group_id(GroupId(s("g"))).with_generation_id_or_member_epoch(-1)),
            frame(19, 4, 1, &CreateTopicsRequest::default()),
        ];
        let mut f = valid[which].clone();
        for (at, x) in flips {
            let n = f.len();
            f[at % n] ^= x;
        }
        f.truncate(cut % (f.len() + 1));
        let _ = b.handle(&f, 10);
        b.poll(20);
        b.poll(100_000);
    }
}

#[test]
fn groups_are_bounded() {
    let mut b = broker();
    let q = JoinGroupRequest::default()
        .with_group_id(GroupId(s("big")))
        .with_session_timeout_ms(6000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range"))]);
    for i in 0..hallows_log::broker::MAX_MEMBERS {
        // v3: no MEMBER_ID_REQUIRED round trip, the member is in at once.
        assert!(matches!(b.handle(&frame(11, 3, i as i32, &q), 0), Reply::Wait(_)), "member {i}");
    }
    let Reply::Now(r) = b.handle(&frame(11, 3, 7, &q), 0) else { panic!("a full group answers at once") };
    let m: JoinGroupResponse = decode(&r, 3, 7);
    assert_eq!(m.error_code, err::GROUP_MAX_SIZE_REACHED);
}

/// Not a test of behaviour: the broker's cost per produce request on the
/// host, for docs/log.md (`cargo test --release -p hallows-log --test broker
/// cost -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement"]
fn cost_of_a_produce_request() {
    let mut b = broker();
    create(&mut b, "t");
    let vals: Vec<String> = (0..16).map(|i| format!("{i:>100}")).collect();
    let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
    let f = frame(0, 8, 1, &produce_req("t", records(&refs), -1));
    // 1,500 requests of 1.8 KB fit the 4 MiB disk.
    let n = 1500;
    let t = std::time::Instant::now();
    for i in 0..n {
        let Reply::Wait(w) = b.handle(&f, i) else { panic!() };
        b.poll(i);
        assert!(b.take(w).is_some());
    }
    let per = t.elapsed().as_nanos() as f64 / n as f64;
    println!("produce request (16 x 100 B, handle + flush on MemDisk): {per:.0} ns");
    let mut c = broker();
    create(&mut c, "t");
    let t = std::time::Instant::now();
    for i in 0..n {
        let _ = c.handle(&f, i);
    }
    println!("handle alone: {:.0} ns", t.elapsed().as_nanos() as f64 / n as f64);
    let batch = records(&refs);
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(hallows_log::batch::validate(std::hint::black_box(&batch)).unwrap());
    }
    println!("CRC check of the batch alone: {:.0} ns", t.elapsed().as_nanos() as f64 / n as f64);
}

/// In-system consumers (the ring channel "deliveries"): records read back
/// in order from any offset, a durable committed position, and a Kafka
/// producer's compressed batch skipped and counted, not misread.
#[test]
fn in_system_consumers_read_in_order_and_resume_at_the_durable_commit() {
    let mut b = broker();
    assert_eq!(b.read_internal("jobs", 0, 10).unwrap(), (Vec::new(), 0), "no topic yet: nothing");
    assert_eq!(b.position_internal("workers", "jobs"), 0);
    for n in 0..3 {
        let vals: Vec<String> = (0..5).map(|i| format!("job {}", n * 5 + i)).collect();
        if n == 1 {
            // Built in place, as the in-system producers' batches are:
            // durable (read back below) once it returns.
            let r = b.append_internal_built("jobs", 1000, 4096, |w| {
                for v in &vals {
                    assert!(w.push(Some(1), Some(v.len()), |kd, vd| {
                        kd.copy_from_slice(b"k");
                        vd.copy_from_slice(v.as_bytes());
                    }));
                }
            });
            assert_eq!(r.unwrap(), Some((5, 5)));
            assert_eq!(b.append_internal_built("jobs", 1000, 4096, |_| {}).unwrap(), None);
            continue;
        }
        let kv: Vec<batch::KeyValue> = vals.iter().map(|v| (Some(&b"k"[..]), Some(v.as_bytes()))).collect();
        assert_eq!(b.append_internal("jobs", &batch::encode(0, 1000, &kv), 1000).unwrap(), n * 5);
    }
    let (first, skipped) = b.read_internal("jobs", 0, 7).unwrap();
    assert_eq!(skipped, 0);
    assert_eq!(first.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    assert_eq!(first[6].value.as_deref(), Some(&b"job 6"[..]));
    assert_eq!(first[6].key.as_deref(), Some(&b"k"[..]));
    // From the middle of a batch: the records before it are not repeated.
    let (rest, _) = b.read_internal("jobs", 7, 100).unwrap();
    assert_eq!(rest.iter().map(|r| r.offset).collect::<Vec<_>>(), (7..15).collect::<Vec<_>>());
    assert!(b.read_internal("jobs", 15, 100).unwrap().0.is_empty(), "nothing past the high watermark");
    b.commit_internal("workers", "jobs", 9, 2000).unwrap();
    assert_eq!(b.position_internal("workers", "jobs"), 9);
    assert_eq!(b.position_internal("others", "jobs"), 0);
    // A compressed batch (attributes: gzip) is skipped, counted.
    let mut gz = batch::encode(0, 1000, &[(None, Some(&b"opaque"[..]))]);
    gz[22] |= 1;
    let crc = hallows_log::crc32c::crc32c(&gz[21..]);
    gz[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(b.append_internal("jobs", &gz, 1000).unwrap(), 15);
    let (after, skipped) = b.read_internal("jobs", 14, 100).unwrap();
    assert_eq!((after.len(), after[0].offset, skipped), (1, 14, 1));
    // The commit is durable: a reopened log resumes there.
    let disk = b.into_log().into_device();
    let log = Log::open(disk, LogConfig { segment_bytes: 64 * 1024, ..LogConfig::default() }).unwrap();
    let b = Broker::new(log, BrokerConfig::default());
    assert_eq!(b.position_internal("workers", "jobs"), 9);
}
