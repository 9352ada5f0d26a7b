//! The codec against the `kafka-protocol` crate as an oracle, for every
//! version we serve: requests encoded by the oracle are parsed by us,
//! responses written by us are decoded by the oracle (which must consume
//! every byte), record batches go both ways. Property-based.

use bytes::{Bytes, BytesMut};
use hallows_log::batch;
use hallows_log::proto::*;
use hallows_log::wire::{Reader, Writer};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use proptest::prelude::*;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}
fn tn(x: &str) -> TopicName {
    TopicName(s(x))
}
fn enc<T: Encodable>(m: &T, v: i16) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(&mut b, v).unwrap_or_else(|e| panic!("oracle encode v{v}: {e}"));
    b
}
fn dec<T: Decodable>(b: &[u8], v: i16) -> T {
    let mut rest = b;
    let m = T::decode(&mut rest, v).unwrap_or_else(|e| panic!("oracle decode v{v}: {e}"));
    assert!(rest.is_empty(), "v{v}: {} bytes left after the oracle decoded our response", rest.len());
    m
}
/// Our response body (without the length and correlation id).
fn body(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::response(77);
    f(&mut w);
    let b = w.finish();
    assert_eq!(i32::from_be_bytes(b[..4].try_into().unwrap()) as usize, b.len() - 4);
    assert_eq!(&b[4..8], &77i32.to_be_bytes());
    b[8..].to_vec()
}
fn range(key: i16) -> std::ops::RangeInclusive<i16> {
    let (_, lo, hi) = SUPPORTED.iter().find(|x| x.0 == key).copied().unwrap();
    lo..=hi
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,20}"
}

#[test]
fn request_header_v1() {
    let h = RequestHeader::default().with_request_api_key(3).with_request_api_version(7).with_correlation_id(-5).with_client_id(Some(s("rdkafka")));
    let b = enc(&h, 1);
    let mut r = Reader::new(&b);
    assert_eq!(header(&mut r).unwrap(), Header { key: 3, version: 7, correlation: -5, client_id: Some("rdkafka") });
    let h = h.with_client_id(None);
    let b = enc(&h, 1);
    assert_eq!(header(&mut Reader::new(&b)).unwrap().client_id, None);
}

#[test]
fn api_versions_every_version() {
    for v in range(API_VERSIONS) {
        let m: ApiVersionsResponse = dec(&body(|w| write_api_versions(w, v, 0)), v);
        assert_eq!(m.error_code, 0);
        let keys: Vec<(i16, i16, i16)> = m.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
        assert_eq!(keys, SUPPORTED);
    }
    // An unsupported version gets the v0 layout with UNSUPPORTED_VERSION.
    let m: ApiVersionsResponse = dec(&body(|w| write_api_versions(w, 0, err::UNSUPPORTED_VERSION)), 0);
    assert_eq!(m.error_code, 35);
    assert!(m.api_keys.iter().any(|k| k.api_key == API_VERSIONS && k.max_version == 2));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn metadata(topics in proptest::option::of(proptest::collection::vec(name(), 0..4)), auto in any::<bool>(),
                parts in proptest::collection::vec(proptest::collection::vec(prop_oneof![Just(0i16), Just(3i16)], 0..4), 0..4),
                host in name(), port in any::<i32>(), node in 0i32..100) {
        for v in range(METADATA) {
            let t = topics.as_ref().map(|t| t.iter().map(|n| MetadataRequestTopic::default().with_name(Some(tn(n)))).collect());
            let q = MetadataRequest::default().with_topics(if v == 0 { Some(t.clone().unwrap_or_default()) } else { t })
                .with_allow_auto_topic_creation(if v >= 4 { auto } else { true });
            let ours = parse_metadata(&mut Reader::new(&enc(&q, v)), v).unwrap();
            let want = match &topics { Some(t) if !(v == 0 && t.is_empty()) => Some(t.clone()), _ => None };
            prop_assert_eq!(ours.topics, want);
            prop_assert_eq!(ours.allow_auto_create, if v >= 4 { auto } else { true });
            let resp = MetadataResp { node_id: node, host: host.clone(), port, cluster_id: "c".into(),
                topics: parts.iter().enumerate().map(|(i, p)| MetaTopic { error: 0, name: format!("t{i}"), partitions: p.clone() }).collect() };
            let m: MetadataResponse = dec(&body(|w| write_metadata(w, v, &resp)), v);
            prop_assert_eq!(m.brokers.len(), 1);
            prop_assert_eq!((m.brokers[0].node_id.0, m.brokers[0].host.as_str(), m.brokers[0].port), (node, host.as_str(), port));
            prop_assert_eq!(m.topics.len(), parts.len());
            for (i, t) in m.topics.iter().enumerate() {
                prop_assert_eq!(t.name.as_ref().unwrap().0.as_str(), format!("t{i}"));
                let errs: Vec<i16> = t.partitions.iter().map(|p| p.error_code).collect();
                prop_assert_eq!(&errs, &parts[i]);
                for (j, p) in t.partitions.iter().enumerate() {
                    prop_assert_eq!((p.partition_index, p.leader_id.0), (j as i32, node));
                    prop_assert_eq!(p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(), vec![node]);
                }
            }
        }
    }

    #[test]
    fn produce(acks in prop_oneof![Just(-1i16), Just(0), Just(1)], timeout in any::<i32>(),
               data in proptest::collection::vec((name(), proptest::collection::vec((any::<i32>(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..50))), 0..3)), 0..3),
               base in any::<i64>(), start in any::<i64>(), e in any::<i16>()) {
        for v in range(PRODUCE) {
            let q = ProduceRequest::default().with_acks(acks).with_timeout_ms(timeout).with_topic_data(
                data.iter().map(|(n, ps)| TopicProduceData::default().with_name(tn(n)).with_partition_data(
                    ps.iter().map(|(i, r)| PartitionProduceData::default().with_index(*i).with_records(r.clone().map(Bytes::from))).collect())).collect());
            let b = enc(&q, v);
            let mut rd = Reader::new(&b);
            let ours = parse_produce(&mut rd, v).unwrap();
            prop_assert_eq!(rd.remaining(), 0);
            prop_assert_eq!((ours.acks, ours.timeout_ms, ours.transactional_id), (acks, timeout, None));
            prop_assert_eq!(ours.topics.len(), data.len());
            for ((n, ps), (on, ops)) in data.iter().zip(&ours.topics) {
                prop_assert_eq!(n.as_str(), *on);
                for ((i, r), op) in ps.iter().zip(ops) {
                    prop_assert_eq!(*i, op.index);
                    prop_assert_eq!(r.as_deref(), op.records);
                }
            }
            let resp: Vec<(String, Vec<ProducePartResp>)> = data.iter().map(|(n, ps)| (n.clone(), ps.iter().map(|(i, _)| ProducePartResp { index: *i, error: e, base_offset: base, log_start_offset: start }).collect())).collect();
            let m: ProduceResponse = dec(&body(|w| write_produce(w, v, &resp)), v);
            prop_assert_eq!(m.responses.len(), resp.len());
            for (t, (n, ps)) in m.responses.iter().zip(&resp) {
                prop_assert_eq!(t.name.0.as_str(), n.as_str());
                for (p, q) in t.partition_responses.iter().zip(ps) {
                    prop_assert_eq!((p.index, p.error_code, p.base_offset), (q.index, e, base));
                    if v >= 5 { prop_assert_eq!(p.log_start_offset, start); }
                }
            }
        }
    }

    #[test]
    fn fetch(wait in any::<i32>(), min in any::<i32>(), max in any::<i32>(), iso in 0i8..2,
             topics in proptest::collection::vec((name(), proptest::collection::vec((any::<i32>(), any::<i64>(), any::<i32>()), 0..3)), 0..3),
             records in proptest::collection::vec(any::<u8>(), 0..100), hw in any::<i64>(), ls in any::<i64>(), e in any::<i16>()) {
        for v in range(FETCH) {
            let q = FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(wait).with_min_bytes(min).with_max_bytes(max).with_isolation_level(iso)
                .with_session_id(if v >= 7 { 5 } else { 0 }).with_session_epoch(if v >= 7 { 3 } else { -1 })
                .with_topics(topics.iter().map(|(n, ps)| FetchTopic::default().with_topic(tn(n)).with_partitions(
                    ps.iter().map(|(p, o, m)| FetchPartition::default().with_partition(*p).with_fetch_offset(*o).with_partition_max_bytes(*m)).collect())).collect());
            let b = enc(&q, v);
            let mut rd = Reader::new(&b);
            let ours = parse_fetch(&mut rd, v).unwrap();
            prop_assert_eq!(rd.remaining(), 0);
            prop_assert_eq!((ours.max_wait_ms, ours.min_bytes, ours.max_bytes, ours.isolation_level), (wait, min, max, iso));
            if v >= 7 { prop_assert_eq!((ours.session_id, ours.session_epoch), (5, 3)); }
            let want: Vec<(String, Vec<FetchPart>)> = topics.iter().map(|(n, ps)| (n.clone(), ps.iter().map(|&(index, offset, max_bytes)| FetchPart { index, offset, max_bytes }).collect())).collect();
            prop_assert_eq!(&ours.topics, &want);
            let resp: Vec<(String, Vec<FetchPartResp>)> = want.iter().map(|(n, ps)| (n.clone(), ps.iter().map(|p| FetchPartResp { index: p.index, error: e, high_watermark: hw, log_start_offset: ls, records: records.clone() }).collect())).collect();
            let m: FetchResponse = dec(&body(|w| write_fetch(w, v, &resp)), v);
            if v >= 7 { prop_assert_eq!((m.error_code, m.session_id), (0, 0)); }
            for (t, (n, ps)) in m.responses.iter().zip(&resp) {
                prop_assert_eq!(t.topic.0.as_str(), n.as_str());
                for (p, q) in t.partitions.iter().zip(ps) {
                    prop_assert_eq!((p.partition_index, p.error_code, p.high_watermark, p.last_stable_offset), (q.index, e, hw, hw));
                    if v >= 5 { prop_assert_eq!(p.log_start_offset, ls); }
                    prop_assert_eq!(p.records.as_deref(), Some(&records[..]));
                    if v >= 11 { prop_assert_eq!(p.preferred_read_replica.0, -1); }
                }
            }
        }
    }

    #[test]
    fn list_offsets(topics in proptest::collection::vec((name(), proptest::collection::vec((any::<i32>(), any::<i64>()), 0..3)), 0..3),
                    e in any::<i16>(), ts in any::<i64>(), off in any::<i64>()) {
        for v in range(LIST_OFFSETS) {
            let q = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics.iter().map(|(n, ps)| ListOffsetsTopic::default().with_name(tn(n))
                .with_partitions(ps.iter().map(|(p, t)| ListOffsetsPartition::default().with_partition_index(*p).with_timestamp(*t)).collect())).collect());
            let b = enc(&q, v);
            let mut rd = Reader::new(&b);
            let ours = parse_list_offsets(&mut rd, v).unwrap();
            prop_assert_eq!(rd.remaining(), 0);
            prop_assert_eq!(&ours.topics, &topics);
            let resp: Vec<(String, Vec<ListOffsetsPart>)> = topics.iter().map(|(n, ps)| (n.clone(), ps.iter().map(|(p, _)| (*p, e, ts, off)).collect())).collect();
            let m: ListOffsetsResponse = dec(&body(|w| write_list_offsets(w, v, &resp)), v);
            for (t, (n, ps)) in m.topics.iter().zip(&resp) {
                prop_assert_eq!(t.name.0.as_str(), n.as_str());
                for (p, q) in t.partitions.iter().zip(ps) {
                    prop_assert_eq!((p.partition_index, p.error_code, p.timestamp, p.offset), *q);
                }
            }
        }
    }

    #[test]
    fn create_topics(topics in proptest::collection::vec((name(), any::<i32>(), any::<i16>(), proptest::collection::vec((name(), proptest::option::of(name())), 0..3)), 0..3),
                     only in any::<bool>(), msg in proptest::option::of(name()), e in any::<i16>()) {
        for v in range(CREATE_TOPICS) {
            let q = CreateTopicsRequest::default().with_timeout_ms(1000).with_validate_only(v >= 1 && only).with_topics(topics.iter().map(|(n, p, r, c)| CreatableTopic::default()
                .with_name(tn(n)).with_num_partitions(*p).with_replication_factor(*r)
                .with_configs(c.iter().map(|(k, val)| CreatableTopicConfig::default().with_name(s(k)).with_value(val.as_deref().map(s))).collect())).collect());
            let b = enc(&q, v);
            let mut rd = Reader::new(&b);
            let ours = parse_create_topics(&mut rd, v).unwrap();
            prop_assert_eq!(rd.remaining(), 0);
            prop_assert_eq!(ours.validate_only, v >= 1 && only);
            for (o, (n, p, r, c)) in ours.topics.iter().zip(&topics) {
                prop_assert_eq!((&o.name, o.partitions, o.replication, o.assignments), (n, *p, *r, 0));
                prop_assert_eq!(&o.configs, c);
            }
            let resp: Vec<(String, i16, Option<String>)> = topics.iter().map(|(n, ..)| (n.clone(), e, msg.clone())).collect();
            let m: CreateTopicsResponse = dec(&body(|w| write_create_topics(w, v, &resp)), v);
            for (t, (n, e2, msg2)) in m.topics.iter().zip(&resp) {
                prop_assert_eq!((t.name.0.as_str(), t.error_code), (n.as_str(), *e2));
                if v >= 1 { prop_assert_eq!(t.error_message.as_ref().map(|m| m.as_str().to_string()), msg2.clone()); }
            }
        }
    }

    #[test]
    fn groups(group in name(), member in name(), session in any::<i32>(), rebal in any::<i32>(), gen in any::<i32>(),
              protos in proptest::collection::vec((name(), proptest::collection::vec(any::<u8>(), 0..20)), 0..3), e in any::<i16>(),
              assignment in proptest::collection::vec(any::<u8>(), 0..30)) {
        for v in range(FIND_COORDINATOR) {
            let q = FindCoordinatorRequest::default().with_key(s(&group));
            let b = enc(&q, v);
            prop_assert_eq!(parse_find_coordinator(&mut Reader::new(&b), v).unwrap(), (group.as_str(), 0));
            let m: FindCoordinatorResponse = dec(&body(|w| write_find_coordinator(w, v, e, 3, "h", 9092)), v);
            prop_assert_eq!((m.error_code, m.node_id.0, m.host.as_str(), m.port), (e, 3, "h", 9092));
        }
        for v in range(JOIN_GROUP) {
            let q = JoinGroupRequest::default().with_group_id(GroupId(s(&group))).with_session_timeout_ms(session)
                .with_rebalance_timeout_ms(if v >= 1 { rebal } else { -1 }).with_member_id(s(&member)).with_protocol_type(s("consumer"))
                .with_protocols(protos.iter().map(|(n, m)| JoinGroupRequestProtocol::default().with_name(s(n)).with_metadata(Bytes::from(m.clone()))).collect());
            let ours = parse_join(&mut Reader::new(&enc(&q, v)), v).unwrap();
            prop_assert_eq!((&ours.group, ours.session_ms, &ours.member_id, ours.protocol_type.as_str()), (&group, session, &member, "consumer"));
            if v >= 1 { prop_assert_eq!(ours.rebalance_ms, rebal); }
            prop_assert_eq!(&ours.protocols, &protos);
            let j = JoinResp { error: e, generation: gen, protocol: "range".into(), leader: member.clone(), member_id: member.clone(), members: protos.clone() };
            let m: JoinGroupResponse = dec(&body(|w| write_join(w, v, &j)), v);
            prop_assert_eq!((m.error_code, m.generation_id, m.leader.as_str(), m.member_id.as_str()), (e, gen, member.as_str(), member.as_str()));
            prop_assert_eq!(m.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
            let ms: Vec<(String, Vec<u8>)> = m.members.iter().map(|x| (x.member_id.as_str().to_string(), x.metadata.to_vec())).collect();
            prop_assert_eq!(&ms, &protos);
        }
        for v in range(SYNC_GROUP) {
            let q = SyncGroupRequest::default().with_group_id(GroupId(s(&group))).with_generation_id(gen).with_member_id(s(&member))
                .with_assignments(vec![SyncGroupRequestAssignment::default().with_member_id(s(&member)).with_assignment(Bytes::from(assignment.clone()))]);
            let ours = parse_sync(&mut Reader::new(&enc(&q, v)), v).unwrap();
            prop_assert_eq!(ours, SyncReq { group: group.clone(), generation: gen, member_id: member.clone(), assignments: vec![(member.clone(), assignment.clone())] });
            let m: SyncGroupResponse = dec(&body(|w| write_sync(w, v, e, &assignment)), v);
            prop_assert_eq!((m.error_code, m.assignment.to_vec()), (e, assignment.clone()));
        }
        for v in range(HEARTBEAT) {
            let q = HeartbeatRequest::default().with_group_id(GroupId(s(&group))).with_generation_id(gen).with_member_id(s(&member));
            prop_assert_eq!(parse_heartbeat(&mut Reader::new(&enc(&q, v)), v).unwrap(), (group.clone(), gen, member.clone()));
            let m: HeartbeatResponse = dec(&body(|w| write_error_only(w, v, e)), v);
            prop_assert_eq!(m.error_code, e);
        }
        for v in range(LEAVE_GROUP) {
            let q = if v >= 3 {
                LeaveGroupRequest::default().with_group_id(GroupId(s(&group))).with_members(vec![MemberIdentity::default().with_member_id(s(&member))])
            } else {
                LeaveGroupRequest::default().with_group_id(GroupId(s(&group))).with_member_id(s(&member))
            };
            prop_assert_eq!(parse_leave(&mut Reader::new(&enc(&q, v)), v).unwrap(), (group.clone(), vec![member.clone()]));
            let m: LeaveGroupResponse = dec(&body(|w| write_leave(w, v, e, &[(member.clone(), 25)])), v);
            prop_assert_eq!(m.error_code, e);
            if v >= 3 { prop_assert_eq!((m.members[0].member_id.as_str(), m.members[0].error_code), (member.as_str(), 25)); }
        }
    }

    #[test]
    fn offsets(group in name(), member in name(), gen in any::<i32>(),
               topics in proptest::collection::vec((name(), proptest::collection::vec((any::<i32>(), any::<i64>(), proptest::option::of(name())), 0..3)), 0..3), e in any::<i16>()) {
        for v in range(OFFSET_COMMIT) {
            let q = OffsetCommitRequest::default().with_group_id(GroupId(s(&group))).with_generation_id_or_member_epoch(gen).with_member_id(s(&member))
                .with_topics(topics.iter().map(|(n, ps)| OffsetCommitRequestTopic::default().with_name(tn(n)).with_partitions(ps.iter().map(|(p, o, m)|
                    OffsetCommitRequestPartition::default().with_partition_index(*p).with_committed_offset(*o).with_committed_metadata(m.as_deref().map(s))).collect())).collect());
            let b = enc(&q, v);
            let mut rd = Reader::new(&b);
            let ours = parse_offset_commit(&mut rd, v).unwrap();
            prop_assert_eq!(rd.remaining(), 0);
            prop_assert_eq!(ours, CommitReq { group: group.clone(), generation: gen, member_id: member.clone(), topics: topics.clone() });
            let resp: Vec<(String, Vec<(i32, i16)>)> = topics.iter().map(|(n, ps)| (n.clone(), ps.iter().map(|(p, ..)| (*p, e)).collect())).collect();
            let m: OffsetCommitResponse = dec(&body(|w| write_offset_commit(w, v, &resp)), v);
            let got: Vec<(String, Vec<(i32, i16)>)> = m.topics.iter().map(|t| (t.name.0.as_str().to_string(), t.partitions.iter().map(|p| (p.partition_index, p.error_code)).collect())).collect();
            prop_assert_eq!(got, resp);
        }
        for v in range(OFFSET_FETCH) {
            let q = OffsetFetchRequest::default().with_group_id(GroupId(s(&group))).with_topics(Some(topics.iter().map(|(n, ps)|
                OffsetFetchRequestTopic::default().with_name(tn(n)).with_partition_indexes(ps.iter().map(|p| p.0).collect())).collect()));
            let ours = parse_offset_fetch(&mut Reader::new(&enc(&q, v)), v).unwrap();
            let want: Vec<(String, Vec<i32>)> = topics.iter().map(|(n, ps)| (n.clone(), ps.iter().map(|p| p.0).collect())).collect();
            prop_assert_eq!(ours, (group.clone(), Some(want)));
            if v >= 2 {
                let all = OffsetFetchRequest::default().with_group_id(GroupId(s(&group))).with_topics(None);
                prop_assert_eq!(parse_offset_fetch(&mut Reader::new(&enc(&all, v)), v).unwrap(), (group.clone(), None));
            }
            let resp: Vec<(String, Vec<OffsetFetchPart>)> = topics.iter().map(|(n, ps)| (n.clone(), ps.iter().map(|(p, o, m)| (*p, *o, m.clone(), e)).collect())).collect();
            let m: OffsetFetchResponse = dec(&body(|w| write_offset_fetch(w, v, &resp, 0)), v);
            let got: Vec<(String, Vec<OffsetFetchPart>)> = m.topics.iter().map(|t| (t.name.0.as_str().to_string(), t.partitions.iter()
                .map(|p| (p.partition_index, p.committed_offset, p.metadata.as_ref().map(|x| x.as_str().to_string()), p.error_code)).collect())).collect();
            prop_assert_eq!(got, resp);
        }
    }

    /// Batches the oracle encodes pass our checks and decode to the same
    /// records; ours decode in the oracle.
    #[test]
    fn record_batches(recs in proptest::collection::vec((proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))), 1..20),
                      base in 0i64..1 << 40, ts in 0i64..1 << 42) {
        let records: Vec<Record> = recs.iter().enumerate().map(|(i, (k, v))| Record {
            transactional: false, control: false, partition_leader_epoch: 0, producer_id: -1, producer_epoch: -1,
            timestamp_type: TimestampType::Creation, offset: base + i as i64, sequence: i as i32, timestamp: ts + i as i64,
            key: k.clone().map(Bytes::from), value: v.clone().map(Bytes::from), headers: Default::default(),
        }).collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
        let sets = batch::split(&buf).unwrap();
        prop_assert_eq!(sets.len(), 1, "one batch (of {} bytes, {:?})", buf.len(), batch::batch_len(&buf));
        let info = batch::validate(&buf).unwrap();
        prop_assert_eq!((info.base_offset, info.next_offset(), info.max_timestamp), (base, base + recs.len() as i64, ts + recs.len() as i64 - 1));
        let ours = batch::decode(&buf).unwrap();
        for (o, (k, v)) in ours.iter().zip(&recs) {
            prop_assert_eq!((&o.key, &o.value), (k, v));
        }
        // Ours, read by the oracle.
        let kv: Vec<batch::KeyValue> = recs.iter().map(|(k, v)| (k.as_deref(), v.as_deref())).collect();
        let mut b = batch::encode(base, ts, &kv);
        let set = RecordBatchDecoder::decode(&mut Bytes::from(b.clone())).unwrap();
        prop_assert_eq!(set.records.len(), recs.len());
        for (i, (r, (k, v))) in set.records.iter().zip(&recs).enumerate() {
            prop_assert_eq!((r.offset, r.timestamp), (base + i as i64, ts));
            prop_assert_eq!((r.key.as_deref(), r.value.as_deref()), (k.as_deref(), v.as_deref()));
        }
        // The broker's offset assignment leaves the CRC valid.
        batch::assign_offset(&mut b, 12345);
        prop_assert!(RecordBatchDecoder::decode(&mut Bytes::from(b)).is_ok());
    }
}

/// Random bytes as a request body never panic any parser.
#[test]
fn parsers_survive_garbage() {
    let mut runner = proptest::test_runner::TestRunner::default();
    runner.run(&proptest::collection::vec(any::<u8>(), 0..200), |b| {
        for v in 0..12 {
            let _ = parse_metadata(&mut Reader::new(&b), v);
            let _ = parse_produce(&mut Reader::new(&b), v);
            let _ = parse_fetch(&mut Reader::new(&b), v);
            let _ = parse_list_offsets(&mut Reader::new(&b), v);
            let _ = parse_create_topics(&mut Reader::new(&b), v);
            let _ = parse_join(&mut Reader::new(&b), v);
            let _ = parse_sync(&mut Reader::new(&b), v);
            let _ = parse_leave(&mut Reader::new(&b), v);
            let _ = parse_offset_commit(&mut Reader::new(&b), v);
            let _ = parse_offset_fetch(&mut Reader::new(&b), v);
            let _ = batch::validate(&b);
            let _ = batch::split(&b);
            let _ = batch::decode(&b);
        }
        Ok(())
    }).unwrap();
}
