//! The report parser must never panic, whatever a phone (or an adversary) sends.
#![no_main]

use incident_vault::domain::wire::Object;
use incident_vault::domain::{Report, ReportWire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As the route reads a body: an object only.
    if let Ok(Object(wire)) = serde_json::from_slice::<Object<ReportWire>>(data) {
        if let Ok(report) = Report::parse(wire) {
            // What is sealed must parse back to the same wire shape.
            let sealed = serde_json::to_vec(&report).expect("a valid report serialises");
            let again: ReportWire = serde_json::from_slice(&sealed).expect("it parses back");
            assert!(Report::parse(again).is_ok());
        }
    }
});
