//! Single-threaded streaming across many wraps of the data area.

#![cfg(not(loom))]

use std::sync::Arc;

use rmemring::{pattern, CreateOptions, Overflow, ProduceError, Region};

#[test]
fn drop_new_streams_every_record_once_in_order() {
    let region =
        Arc::new(Region::memfd(CreateOptions::new(4096).overflow(Overflow::DropNew)).unwrap());
    let mut producer = region.producer().unwrap();
    let mut consumer = region.consumer().unwrap();
    let max = region.layout().max_payload;
    let mut produced = 0u64;
    let mut consumed = 0u64;
    let mut buf = vec![0u8; max as usize];
    while consumed < 20_000 {
        loop {
            let len = pattern::payload_len(produced, 0, max) as usize;
            pattern::fill(produced, &mut buf[..len]);
            match producer.push(&buf[..len]) {
                Ok(()) => produced += 1,
                Err(ProduceError::Full) => break,
                Err(e) => panic!("{e}"),
            }
        }
        producer.publish();
        let mut batch = consumer.batch().unwrap();
        for record in batch.iter() {
            let record = record.unwrap();
            assert_eq!(record.seq, consumed);
            assert_eq!(record.lost_before, 0);
            assert_eq!(
                record.payload.len() as u32,
                pattern::payload_len(consumed, 0, max)
            );
            assert!(pattern::verify(record.seq, record.payload));
            consumed += 1;
        }
    }
    assert_eq!(consumer.stats().lost, 0);
}
