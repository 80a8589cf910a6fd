//! Fuzz target: `decode_request` on arbitrary frames must return, never panic or abort.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = skein_net::decode_request(bytes::Bytes::copy_from_slice(data));
});
