//! Feeds arbitrary bytes through what the broker does with a client's bytes before any handler
//! runs: frame reading (size prefix limits), header decoding, the version check and the
//! kafka-protocol body decoder of the API. Nothing may panic or hang.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut reader = data;
    while let Ok(Some(frame)) = rt.block_on(broker::server::frame::read_frame(&mut reader, 1 << 20)) {
        let Ok(mut req) = broker::server::parse_header(frame) else { continue };
        let version = req.header.request_api_version;
        let Some(s) = broker::api::versions::supported(req.api) else { continue };
        if version < s.min || version > s.max {
            continue;
        }
        let mut body: Bytes = req.body.clone();
        let _ = kafka_protocol::messages::RequestKind::decode(req.api, &mut body, version);
    }
});
