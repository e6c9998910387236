//! The `serde` feature: the data types a program reports serialize with
//! their Rust field names, and the modes as the names messages use.
//! `cargo test -p rmemring --features serde` (which `cargo xtask test`
//! runs as part of its workspace tests).

#![cfg(all(feature = "serde", not(loom)))]

use rmemring::uapi::{
    RecoveryInfo,
    RingInfo,
    RingStats, //
};
use rmemring::{
    CacheMode,
    ConsumerStats,
    Overflow,
    ProducerStats, //
};
use serde_json::{
    json,
    Value, //
};

#[test]
fn modes_serialize_as_their_names() {
    for mode in Overflow::ALL {
        assert_eq!(json!(mode), json!(mode.name()));
    }
    for mode in CacheMode::ALL {
        assert_eq!(json!(mode), json!(mode.name()));
    }
}

#[test]
fn ring_stats_serialize_every_field_by_name() {
    let stats = RingStats {
        producer_pos: 1,
        records_produced: 2,
        records_overwritten: 3,
        producer_running: 1,
        records_refused: 4,
        ..Default::default()
    };
    let value = json!(stats);
    assert_eq!(value["producer_pos"], 1);
    assert_eq!(value["records_produced"], 2);
    assert_eq!(value["records_overwritten"], 3);
    assert_eq!(value["producer_running"], 1);
    assert_eq!(value["records_refused"], 4);
    assert_eq!(value["reserved"], json!([0, 0]));
    // Every field and nothing else: 17 counters and states, `reserved`.
    assert_eq!(value.as_object().unwrap().len(), 18, "{value}");
}

#[test]
fn ring_info_and_recovery_info_serialize_by_name() {
    let info = RingInfo {
        abi_version: 1,
        data_size: 1 << 20,
        index: 3,
        ..Default::default()
    };
    let value = json!(info);
    assert_eq!(value["abi_version"], 1);
    assert_eq!(value["data_size"], 1 << 20);
    assert_eq!(value["index"], 3);
    assert_eq!(value["reserved"], json!([0u32; 8].to_vec()));

    let found = RecoveryInfo {
        verdict: 1,
        boot_id: [7, 8],
        realtime_offset_ns: -5,
        first_seq: 10,
        last_seq: 20,
        ..Default::default()
    };
    let value = json!(found);
    assert_eq!(value["verdict"], 1);
    assert_eq!(value["boot_id"], json!([7, 8]));
    assert_eq!(value["realtime_offset_ns"], -5);
    assert_eq!(
        (value["first_seq"].clone(), value["last_seq"].clone()),
        (json!(10), json!(20))
    );
}

#[test]
fn counters_serialize_by_name() {
    // Non-exhaustive: made as a user must, from `default()`.
    let mut produced = ProducerStats::default();
    produced.records = 5;
    let mut consumed = ConsumerStats::default();
    consumed.lost = 2;
    consumed.sleeps = 1;
    let (p, c): (Value, Value) = (json!(produced), json!(consumed));
    assert_eq!(p["records"], 5);
    assert_eq!(c, json!({"records": 0, "bytes": 0, "lost": 2, "sleeps": 1}));
}
