//! A queue message body of any bytes: decoded or refused, never a panic; what decodes re-encodes
//! to a message that decodes to the same job.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spillway_core::domain::JobMessage;

fuzz_target!(|body: &str| {
    if let Ok(message) = JobMessage::decode(body) {
        let again = JobMessage::decode(&message.encode()).expect("what this build writes it reads");
        assert_eq!(again.job_id, message.job_id);
        assert_eq!(again.payload.get(), message.payload.get());
    }
});
